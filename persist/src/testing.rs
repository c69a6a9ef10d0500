//! Test support shared by this crate's tests and the `hermes` binary's: a small disk to
//! fill. Not part of the API.

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// A tmpfs of `kib` KiB mounted at a path, unmounted on drop: a disk a test can fill.
/// Mounting needs root with CAP_SYS_ADMIN (as this project's tests and CI run). Without
/// it the test cannot run: with `HERMES_REQUIRE_ALL=1` (CI sets it) that is a failure
/// naming the test, otherwise a note and `None`, and the caller returns early.
#[derive(Debug)]
pub struct Tmpfs(pub PathBuf);

impl Tmpfs {
    /// Mounts it (creating `path`).
    pub fn mount(path: PathBuf, kib: u64) -> Option<Tmpfs> {
        std::fs::create_dir_all(&path).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
            .arg(&path)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Some(Tmpfs(path));
        }
        let test = std::thread::current().name().unwrap_or("?").to_string();
        if std::env::var("HERMES_REQUIRE_ALL").is_ok_and(|v| !v.is_empty() && v != "0") {
            panic!("HERMES_REQUIRE_ALL=1: {test} needs to mount a tmpfs (a small disk to fill), and `mount -t tmpfs` failed here: run the tests as root");
        }
        eprintln!(
            "note: {test} cannot mount a tmpfs here (needs root) and skips the full-disk part"
        );
        None
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}
