//! Checks on the shm path before the writer takes it or a reader maps it. The file lives
//! in a shared directory (`/dev/shm`), so another user must not be able to aim it: at a
//! file of theirs through a link, at a FIFO that hangs the writer, at a live writer's
//! file, or at a file that is not ours to replace.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use hermes_book::clock::unix_ns;

use crate::layout::{self, header};
use crate::region::{get_u32, get_u64, io_err};
use crate::ShmError;

/// What is at a path a writer is about to take.
pub(crate) enum Existing {
    /// Nothing.
    None,
    /// A Hermes shm file: its generation, and its writer's pid while that process is
    /// alive and has not closed the file.
    Hermes {
        generation: u64,
        live_pid: Option<u32>,
    },
    /// A regular file that is not a Hermes shm file (or too short to be one).
    Foreign,
}

/// Looks at what is at `path` without following a link or blocking on a FIFO: anything
/// but a regular file is refused.
pub(crate) fn existing(path: &Path) -> Result<Existing, ShmError> {
    use std::io::Read;
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Existing::None),
        Err(e) => return Err(io_err(path)(e)),
    };
    if !meta.file_type().is_file() {
        return Err(ShmError::NotRegular {
            path: path.display().to_string(),
            kind: file_kind(&meta),
        });
    }
    // O_NOFOLLOW | O_NONBLOCK: the path may have been swapped since the lstat above.
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(io_err(path))?;
    let mut b = [0u8; header::CREATED_NS];
    if f.read_exact(&mut b).is_err() || b[..8] != layout::MAGIC {
        return Ok(Existing::Foreign);
    }
    let generation = get_u64(&b, header::GENERATION);
    let closed = get_u32(&b, header::FLAGS) & layout::FLAG_CLOSED != 0;
    let pid = get_u32(&b, header::WRITER_PID);
    let live_pid = (!closed && process_exists(pid)).then_some(pid);
    Ok(Existing::Hermes {
        generation,
        live_pid,
    })
}

/// Whether process `pid` exists. A pid of 0, or one past `i32::MAX` (a negative
/// `pid_t`), would make `kill` ask about a process group: a damaged or forged header,
/// never a live writer.
pub(crate) fn process_exists(pid: u32) -> bool {
    let Some(pid) = libc::pid_t::try_from(pid).ok().filter(|p| *p > 0) else {
        return false;
    };
    // SAFETY: kill with signal 0 only checks that the process exists.
    let sent = unsafe { libc::kill(pid, 0) } == 0;
    sent || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

pub(crate) fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_symlink() {
        "a symbolic link"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

/// Refuses a directory in which another user could replace the file: writable by others
/// (or its group) without the sticky bit, or owned by another user than us or root.
pub(crate) fn check_directory(path: &Path) -> Result<(), ShmError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let meta = std::fs::metadata(dir).map_err(io_err(dir))?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    let mode = meta.mode();
    let shared_writable = mode & 0o022 != 0 && mode & 0o1000 == 0;
    let foreign_owner = meta.uid() != me && meta.uid() != 0;
    if shared_writable || foreign_owner {
        return Err(ShmError::UnsafeDirectory {
            path: dir.display().to_string(),
            mode: mode & 0o7777,
            owner: meta.uid(),
        });
    }
    Ok(())
}

/// Creates the writer's private file beside `path`: an unguessable name, `O_EXCL` (a
/// planted file or link at that name makes it fail, never followed or truncated) and
/// `O_NOFOLLOW`.
pub(crate) fn create_temp(path: &Path, mode: u32) -> Result<(PathBuf, File), ShmError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut last = None;
    for _ in 0..16 {
        let mut r = [0u8; 8];
        // SAFETY: getrandom writes at most `r.len()` bytes into `r`.
        let n = unsafe { libc::getrandom(r.as_mut_ptr().cast(), r.len(), 0) };
        if n != r.len() as isize {
            // No entropy syscall: the time and pid still make a collision unlikely, and
            // O_EXCL makes one harmless.
            r = (unix_ns() as u64 ^ u64::from(std::process::id()).rotate_left(32)).to_le_bytes();
        }
        let tmp = path.with_file_name(format!(".{name}.{:016x}.tmp", u64::from_le_bytes(r)));
        match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
        {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some((tmp, e)),
            Err(e) => return Err(io_err(&tmp)(e)),
        }
    }
    let (tmp, e) = last.expect("the loop ran");
    Err(io_err(&tmp)(e))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    use crate::{ReaderOptions, ShmError, ShmReader, ShmWriter, WriterOptions};

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("hermes-shm-{}-{}", name, std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d.join("region")
    }

    #[test]
    fn the_path_cannot_be_aimed_elsewhere() {
        use std::os::unix::fs::symlink;
        let path = tmp("aim");
        let dir = path.parent().unwrap().to_path_buf();
        let victim = dir.join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        // A link planted at the path, and at the old guessable temp names.
        symlink(&victim, &path).unwrap();
        for pid in [std::process::id(), 1, 2] {
            symlink(&victim, dir.join(format!(".region.{pid}.tmp"))).unwrap();
        }
        let e = ShmWriter::create(&path, WriterOptions::default())
            .err()
            .unwrap();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        std::fs::remove_file(&path).unwrap();
        let w = ShmWriter::create(&path, WriterOptions::default()).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        let mode = std::fs::metadata(&victim).unwrap().permissions().mode() & 0o777;
        assert_ne!(mode, 0o600, "the victim's mode was not touched");
        // A second writer while the first is alive: refused, naming its pid.
        let e = ShmWriter::create(&path, WriterOptions::default())
            .err()
            .unwrap();
        assert!(
            e.to_string()
                .contains(&format!("pid {}", std::process::id())),
            "{e}"
        );
        drop(w);
        // Closed: the path is free again.
        drop(ShmWriter::create(&path, WriterOptions::default()).unwrap());
        // A FIFO is refused at once (opening it would block for good).
        std::fs::remove_file(&path).unwrap();
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = ShmWriter::create(&path, WriterOptions::default())
            .err()
            .unwrap();
        assert!(e.to_string().contains("a FIFO"), "{e}");
        // SAFETY: test path; the reader opens non-blocking and refuses it.
        let e = unsafe { ShmReader::open(&path) }.err().unwrap();
        assert!(e.to_string().contains("a FIFO"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_directory_others_can_write_is_refused_unless_sticky() {
        let path = tmp("dirmode");
        let dir = path.parent().unwrap();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = ShmWriter::create(&path, WriterOptions::default())
            .err()
            .unwrap();
        assert!(matches!(e, ShmError::UnsafeDirectory { .. }), "{e}");
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
        drop(ShmWriter::create(&path, WriterOptions::default()).unwrap());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_file_of_another_user_is_refused_unless_allowed() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            // Only root can make a file that belongs to someone else; CI runs as root.
            assert!(
                std::env::var_os("HERMES_REQUIRE_ALL").is_none_or(|v| v != "1"),
                "HERMES_REQUIRE_ALL=1: this test must run as root (it chowns a file to nobody)"
            );
            eprintln!("note: not root, cannot chown a test file to another user");
            return;
        }
        let path = tmp("owner");
        drop(ShmWriter::create(&path, WriterOptions::default()).unwrap());
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path; 65534 is `nobody`.
        assert_eq!(unsafe { libc::chown(c.as_ptr(), 65534, 65534) }, 0);
        // SAFETY: test-owned file.
        let e = unsafe { ShmReader::open(&path) }.err().unwrap();
        assert!(
            matches!(e, ShmError::OtherOwner { owner: 65534, .. }),
            "{e}"
        );
        let allow = ReaderOptions {
            allow_other_owner: true,
        };
        // SAFETY: test-owned file.
        assert!(unsafe { ShmReader::open_with(&path, &allow) }.is_ok());
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
}
