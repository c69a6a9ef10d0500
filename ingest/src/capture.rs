//! The native capture format: append-only, length-prefixed, checksummed records of raw
//! frames with their receive time, venue and connection. Byte layout in
//! `ingest/CAPTURE.md`.
//!
//! A crash can leave a torn last record; [`CaptureReader`] stops at the first record that
//! is incomplete or fails its checksum and reports the offset, and
//! [`CaptureWriter::open_append`] cuts the file there before appending.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::event::Venue;

/// `b"HERMCAP\0"`.
pub const MAGIC: [u8; 8] = *b"HERMCAP\0";
/// Format version.
pub const VERSION: u16 = 1;
/// File header length.
pub const FILE_HEADER_LEN: usize = 32;
/// Record header length.
pub const RECORD_HEADER_LEN: usize = 24;
/// Largest payload a record may have (a sanity bound that tells garbage from a length).
pub const MAX_PAYLOAD: usize = 256 << 20;

/// What a record holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordKind {
    /// A WebSocket message.
    Ws = 0,
    /// A REST depth snapshot; the tag is the symbol.
    RestDepth = 1,
}

/// One record, borrowed from the reader's buffer or the writer's caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// Receive time, Unix ns.
    pub recv_ts_ns: i64,
    /// Venue.
    pub venue: Venue,
    /// Kind.
    pub kind: RecordKind,
    /// Connection id.
    pub conn: u16,
    /// Kind-specific tag (the symbol of a REST snapshot; empty for WebSocket frames).
    pub tag: &'a [u8],
    /// The raw frame.
    pub data: &'a [u8],
}

impl<'a> Record<'a> {
    /// The record as the frame it journals, for the decoder.
    pub fn frame(&self) -> crate::Frame<'a> {
        crate::Frame {
            venue: self.venue,
            kind: match self.kind {
                RecordKind::Ws => crate::FrameKind::Ws,
                RecordKind::RestDepth => crate::FrameKind::RestDepth { symbol: self.tag },
            },
            conn: self.conn,
            recv_ts_ns: self.recv_ts_ns,
            data: self.data,
        }
    }
}

/// Capture file errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaptureError {
    /// I/O.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: String,
        /// Cause.
        source: io::Error,
    },
    /// Not a capture file.
    #[error("{path}: not a Hermes capture file (bad magic); for JSON-lines recordings use --format jsonl")]
    BadMagic {
        /// File.
        path: String,
    },
    /// A version this build cannot read.
    #[error("{path}: capture format version {found}; this build reads version {VERSION}")]
    Version {
        /// File.
        path: String,
        /// Found version.
        found: u16,
    },
    /// A record too large to write.
    #[error("record of {len} bytes exceeds the {MAX_PAYLOAD}-byte limit")]
    TooLarge {
        /// Its size.
        len: usize,
    },
}

/// Why reading stopped before the end of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// Offset of the first bad record: the file is good up to here.
    pub offset: u64,
    /// Bytes after it.
    pub trailing_bytes: u64,
    /// What was wrong.
    pub reason: &'static str,
}

/// What [`CaptureWriter::open_append`] found before appending.
#[derive(Clone, Debug, Default)]
pub struct Reopened {
    /// The torn tail that was cut, if any.
    pub torn: Option<TornTail>,
    /// Damaged regions in the middle, skipped by every reader and left in place (the
    /// first [`MAX_DAMAGE_KEPT`]).
    pub damage: Vec<Damage>,
    /// Bytes in damaged regions.
    pub damaged_bytes: u64,
    /// Files the damaged regions and a corrupt (not merely incomplete) tail were copied
    /// to: `<file>.<offset>.corrupt`.
    pub kept_aside: Vec<PathBuf>,
}

/// Copies bytes `offset..offset + len` of `path` to `<path>.<offset>.corrupt` (once: an
/// existing copy is kept) and returns that path: damaged bytes are kept for a look, never
/// just deleted.
pub fn keep_aside(path: &Path, offset: u64, len: u64) -> Result<PathBuf, CaptureError> {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{offset}.corrupt"));
    let out = PathBuf::from(name);
    if out.exists() {
        return Ok(out);
    }
    let io = |p: &Path, source| CaptureError::Io {
        path: p.display().to_string(),
        source,
    };
    let mut f = File::open(path).map_err(|e| io(path, e))?;
    f.seek(SeekFrom::Start(offset)).map_err(|e| io(path, e))?;
    let tmp = {
        let mut t = out.as_os_str().to_owned();
        t.push(".tmp");
        PathBuf::from(t)
    };
    let mut w = File::create(&tmp).map_err(|e| io(&tmp, e))?;
    // Through a buffer of our own (not io::copy's copy_file_range: plain reads and
    // writes work everywhere, Miri included).
    let mut left = len;
    let mut buf = vec![0u8; 1 << 16];
    while left > 0 {
        let want = buf.len().min(left as usize);
        let n = f.read(&mut buf[..want]).map_err(|e| io(path, e))?;
        if n == 0 {
            break;
        }
        w.write_all(&buf[..n]).map_err(|e| io(&tmp, e))?;
        left -= n as u64;
    }
    w.sync_all().map_err(|e| io(&tmp, e))?;
    std::fs::rename(&tmp, &out).map_err(|e| io(&out, e))?;
    Ok(out)
}

fn file_header() -> [u8; FILE_HEADER_LEN] {
    let mut h = [0u8; FILE_HEADER_LEN];
    h[..8].copy_from_slice(&MAGIC);
    h[8..10].copy_from_slice(&VERSION.to_le_bytes());
    h[10..12].copy_from_slice(&(FILE_HEADER_LEN as u16).to_le_bytes());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    h[16..24].copy_from_slice(&now.to_le_bytes());
    h
}

fn check_header(path: &Path, h: &[u8]) -> Result<(), CaptureError> {
    if h.len() < FILE_HEADER_LEN || h[..8] != MAGIC {
        return Err(CaptureError::BadMagic {
            path: path.display().to_string(),
        });
    }
    let v = u16::from_le_bytes([h[8], h[9]]);
    if v != VERSION {
        return Err(CaptureError::Version {
            path: path.display().to_string(),
            found: v,
        });
    }
    Ok(())
}

/// `true` when `path` starts with the capture magic.
pub fn is_capture(path: &Path) -> bool {
    let mut m = [0u8; 8];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut m))
        .map(|_| m == MAGIC)
        .unwrap_or(false)
}

fn record_header(r: &Record<'_>) -> [u8; RECORD_HEADER_LEN] {
    let mut h = [0u8; RECORD_HEADER_LEN];
    let len = (r.tag.len() + r.data.len()) as u32;
    h[0..4].copy_from_slice(&len.to_le_bytes());
    h[8..16].copy_from_slice(&r.recv_ts_ns.to_le_bytes());
    h[16] = r.venue as u8;
    h[17] = r.kind as u8;
    h[18..20].copy_from_slice(&r.conn.to_le_bytes());
    h[20..22].copy_from_slice(&(r.tag.len() as u16).to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&h[8..]);
    crc.update(r.tag);
    crc.update(r.data);
    h[4..8].copy_from_slice(&crc.finalize().to_le_bytes());
    h
}

/// Appends records to a capture file.
pub struct CaptureWriter {
    out: BufWriter<File>,
    path: PathBuf,
    offset: u64,
}

impl CaptureWriter {
    /// Creates (or truncates) a capture file.
    pub fn create(path: &Path) -> Result<CaptureWriter, CaptureError> {
        let io = |source| CaptureError::Io {
            path: path.display().to_string(),
            source,
        };
        let f = File::create(path).map_err(io)?;
        let mut out = BufWriter::with_capacity(1 << 20, f);
        // A reader may open the file as soon as it exists (the persister tails its
        // journal): the header is on disk before anyone can look. A file whose header
        // could not be written (a full disk) is removed, not left for a reader to trip on.
        if let Err(e) = out.write_all(&file_header()).and_then(|()| out.flush()) {
            let (_file, _unwritten) = out.into_parts();
            let _ = std::fs::remove_file(path);
            return Err(io(e));
        }
        Ok(CaptureWriter {
            out,
            path: path.to_path_buf(),
            offset: FILE_HEADER_LEN as u64,
        })
    }

    /// Opens an existing capture for appending (creating it if absent). The file is read
    /// to its end first: damaged regions in the middle are skipped and left in place (a
    /// reader skips them the same way), and a torn tail (no valid record after it) is
    /// copied aside, unless it is just an incomplete last record, then cut. What was
    /// found is returned so the caller can report it.
    pub fn open_append(path: &Path) -> Result<(CaptureWriter, Reopened), CaptureError> {
        if !path.exists() {
            return Ok((CaptureWriter::create(path)?, Reopened::default()));
        }
        let io = |source| CaptureError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut reader = CaptureReader::open(path)?;
        while reader.next_record()?.is_some() {}
        let good = reader.offset();
        let mut found = Reopened {
            torn: reader.torn().cloned(),
            damage: reader.damage().to_vec(),
            damaged_bytes: reader.damaged_bytes(),
            kept_aside: Vec::new(),
        };
        drop(reader);
        for d in &found.damage {
            found.kept_aside.push(keep_aside(path, d.offset, d.len)?);
        }
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(io)?;
        if let Some(t) = &found.torn {
            if !t.reason.starts_with("incomplete") {
                found
                    .kept_aside
                    .push(keep_aside(path, t.offset, t.trailing_bytes)?);
            }
            f.set_len(good).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        let mut f = f;
        f.seek(SeekFrom::Start(good)).map_err(io)?;
        Ok((
            CaptureWriter {
                out: BufWriter::with_capacity(1 << 20, f),
                path: path.to_path_buf(),
                offset: good,
            },
            found,
        ))
    }

    /// Drops the writer without writing what is still buffered (after a failed write,
    /// whose bytes past the last flushed record the caller cuts).
    pub fn abandon(self) {
        let (_file, _unwritten) = self.out.into_parts();
    }

    /// Reopens `path` for appending after a failed write: cuts it at `good` (a record
    /// boundary everything before which was flushed) and appends from there.
    pub fn resume_at(path: &Path, good: u64) -> Result<CaptureWriter, CaptureError> {
        let io = |source| CaptureError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut f = OpenOptions::new().write(true).open(path).map_err(io)?;
        f.set_len(good).map_err(io)?;
        f.seek(SeekFrom::Start(good)).map_err(io)?;
        Ok(CaptureWriter {
            out: BufWriter::with_capacity(1 << 20, f),
            path: path.to_path_buf(),
            offset: good,
        })
    }

    /// Appends one record; returns the offset just past it.
    pub fn append(&mut self, r: &Record<'_>) -> Result<u64, CaptureError> {
        let len = r.tag.len() + r.data.len();
        if len > MAX_PAYLOAD || r.tag.len() > u16::MAX as usize {
            return Err(CaptureError::TooLarge { len });
        }
        let io = |source| CaptureError::Io {
            path: self.path.display().to_string(),
            source,
        };
        self.out.write_all(&record_header(r)).map_err(io)?;
        self.out.write_all(r.tag).map_err(io)?;
        self.out.write_all(r.data).map_err(io)?;
        self.offset += (RECORD_HEADER_LEN + len) as u64;
        Ok(self.offset)
    }

    /// Offset just past the last appended record.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Writes buffered records to the OS.
    pub fn flush(&mut self) -> Result<(), CaptureError> {
        self.out.flush().map_err(|source| CaptureError::Io {
            path: self.path.display().to_string(),
            source,
        })
    }

    /// Flushes and fsyncs: records appended so far survive a power loss.
    pub fn sync(&mut self) -> Result<(), CaptureError> {
        self.flush()?;
        self.out
            .get_ref()
            .sync_data()
            .map_err(|source| CaptureError::Io {
                path: self.path.display().to_string(),
                source,
            })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A region of a capture that held no valid record and was skipped: the reader found the
/// next valid record after it (magic-free format: a record is valid when its length is
/// possible, its venue and kind are known, its reserved bytes are zero and its CRC-32
/// matches) and went on from there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    /// Offset of the first byte that is not part of a valid record.
    pub offset: u64,
    /// Bytes skipped: the next valid record starts at `offset + len`.
    pub len: u64,
    /// What was wrong with the record that was expected at `offset`.
    pub reason: &'static str,
}

/// How many damaged regions a reader keeps in [`CaptureReader::damage`]; past that only
/// the totals grow.
pub const MAX_DAMAGE_KEPT: usize = 1000;

/// What a record expected at some place turned out to be.
enum Check {
    /// A valid record of this many bytes (header included).
    Valid(usize),
    /// The input ends inside it.
    Incomplete(&'static str),
    /// Not a record.
    Bad(&'static str),
}

/// Reads records in order from a file or any byte stream (a FIFO, a decompressor),
/// through one buffer of its own (no allocation per record; each byte is copied once).
///
/// A record that is not valid does not end the reading: the reader scans forward for the
/// next valid record, skips the bytes in between and reports them
/// ([`damage`](CaptureReader::damage)); only when no valid record follows is the rest a
/// torn tail ([`torn`](CaptureReader::torn)).
pub struct CaptureReader {
    input: Box<dyn Read + Send>,
    path: PathBuf,
    /// Offset in the file of `buf[pos]`.
    offset: u64,
    /// Read no byte at or past this offset (`u64::MAX` for a stream).
    end: u64,
    buf: Vec<u8>,
    pos: usize,
    filled: usize,
    torn: Option<TornTail>,
    damage: Vec<Damage>,
    damaged_bytes: u64,
    damaged_regions: u64,
}

impl CaptureReader {
    /// Opens a capture file and checks its header.
    pub fn open(path: &Path) -> Result<CaptureReader, CaptureError> {
        let io = |source| CaptureError::Io {
            path: path.display().to_string(),
            source,
        };
        let f = File::open(path).map_err(io)?;
        let meta = f.metadata().map_err(io)?;
        let end = if meta.is_file() { meta.len() } else { u64::MAX };
        CaptureReader::with_end(Box::new(f), path, end)
    }

    /// Reads a capture from any byte stream (a FIFO, standard input, a decompressor);
    /// `path` names it in messages. The stream must start with the file header.
    pub fn from_reader(
        input: Box<dyn Read + Send>,
        path: &Path,
    ) -> Result<CaptureReader, CaptureError> {
        CaptureReader::with_end(input, path, u64::MAX)
    }

    fn with_end(
        input: Box<dyn Read + Send>,
        path: &Path,
        end: u64,
    ) -> Result<CaptureReader, CaptureError> {
        let mut r = CaptureReader {
            input,
            path: path.to_path_buf(),
            offset: 0,
            end,
            buf: vec![0; 1 << 20],
            pos: 0,
            filled: 0,
            torn: None,
            damage: Vec::new(),
            damaged_bytes: 0,
            damaged_regions: 0,
        };
        // The header alone: nothing past it is read before the caller says how far
        // the file may be read (`set_end`; a journal's writer may still cut its tail).
        r.end = end.min(FILE_HEADER_LEN as u64);
        if r.fill(FILE_HEADER_LEN)? < FILE_HEADER_LEN {
            return Err(CaptureError::BadMagic {
                path: path.display().to_string(),
            });
        }
        check_header(path, &r.buf[..FILE_HEADER_LEN])?;
        r.pos = FILE_HEADER_LEN;
        r.offset = FILE_HEADER_LEN as u64;
        r.end = end;
        Ok(r)
    }

    /// Offset of the next record (just past the last good one).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Reads no further than `end`: for tailing a file that a writer is still appending
    /// to, `end` being a record boundary the writer has flushed
    /// ([`CaptureWriter::offset`] after [`CaptureWriter::flush`]). Records past `end`
    /// become readable after a later call with a larger `end`. (The persister reads its
    /// journal this way while the journal thread appends.) Bytes past `end` are never
    /// read, so a writer may still cut them. `end` must not go below what an earlier
    /// `end` let the reader take in.
    pub fn set_end(&mut self, end: u64) {
        debug_assert!(
            end >= self.offset + (self.filled - self.pos) as u64 || self.torn.is_some(),
            "set_end below bytes already read"
        );
        self.end = end;
    }

    /// Set once reading stopped at a torn tail: from there to the end no valid record
    /// follows.
    pub fn torn(&self) -> Option<&TornTail> {
        self.torn.as_ref()
    }

    /// The damaged regions skipped so far (the first [`MAX_DAMAGE_KEPT`]).
    pub fn damage(&self) -> &[Damage] {
        &self.damage
    }

    /// Bytes skipped in damaged regions so far (all of them).
    pub fn damaged_bytes(&self) -> u64 {
        self.damaged_bytes
    }

    /// Damaged regions skipped so far (all of them).
    pub fn damaged_regions(&self) -> u64 {
        self.damaged_regions
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io_err(&self, source: io::Error) -> CaptureError {
        CaptureError::Io {
            path: self.path.display().to_string(),
            source,
        }
    }

    /// Makes at least `want` bytes from `pos` available if the input has them (never
    /// reading at or past `end`); returns how many are.
    fn fill(&mut self, want: usize) -> Result<usize, CaptureError> {
        while self.filled - self.pos < want {
            let pulled = self.offset + (self.filled - self.pos) as u64;
            let allowed = self.end.saturating_sub(pulled);
            if allowed == 0 {
                break;
            }
            let short = self.buf.len() - self.pos < want;
            if self.pos > 0 && (short || self.buf.len() - self.filled < (1 << 16)) {
                self.buf.copy_within(self.pos..self.filled, 0);
                self.filled -= self.pos;
                self.pos = 0;
            }
            if self.buf.len() < want && self.filled == self.buf.len() {
                // Grow with what actually arrives (double what is held, up to what is
                // wanted, in 64 KiB steps): a header that claims 256 MiB on a stream that
                // ends sooner costs no more memory than the stream had.
                let have = self.filled - self.pos;
                let target = want.min(have.saturating_mul(2).max(1 << 20));
                self.buf.resize((target + 0xffff) & !0xffff, 0);
            }
            let room = (self.buf.len() - self.filled).min(allowed.min(usize::MAX as u64) as usize);
            match self
                .input
                .read(&mut self.buf[self.filled..self.filled + room])
            {
                Ok(0) => break,
                Ok(n) => self.filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io_err(e)),
            }
        }
        Ok(self.filled - self.pos)
    }

    /// Consumes the rest of the input up to `end` (the buffer is emptied; `offset` is
    /// left for the caller to set); returns how many bytes there were from `pos` on.
    fn drain(&mut self) -> Result<u64, CaptureError> {
        let mut n = (self.filled - self.pos) as u64;
        self.pos = 0;
        self.filled = 0;
        loop {
            let allowed = self.end.saturating_sub(self.offset + n);
            if allowed == 0 {
                break;
            }
            let room = self.buf.len().min(allowed.min(usize::MAX as u64) as usize);
            match self.input.read(&mut self.buf[..room]) {
                Ok(0) => break,
                Ok(k) => n += k as u64,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io_err(e)),
            }
        }
        Ok(n)
    }

    /// What starts `skip` bytes past `pos`. `strict` (a candidate while resynchronizing)
    /// also wants the reserved bytes zero and a tag only on a REST record, which no
    /// shifted window of real data has.
    fn check(&mut self, skip: usize, strict: bool) -> Result<Check, CaptureError> {
        if self.fill(skip + RECORD_HEADER_LEN)? < skip + RECORD_HEADER_LEN {
            return Ok(Check::Incomplete("incomplete record header"));
        }
        let at = self.pos + skip;
        let h: [u8; RECORD_HEADER_LEN] = self.buf[at..at + RECORD_HEADER_LEN]
            .try_into()
            .expect("24 bytes");
        let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
        let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
        let tag_len = u16::from_le_bytes([h[20], h[21]]) as usize;
        if len > MAX_PAYLOAD || tag_len > len {
            return Ok(Check::Bad("impossible record length (corrupt header)"));
        }
        if Venue::from_code(h[16]).is_none() {
            return Ok(Check::Bad("unknown venue code"));
        }
        if h[17] > 1 {
            return Ok(Check::Bad("unknown record kind"));
        }
        if strict && (h[22] != 0 || h[23] != 0 || (h[17] == 0 && tag_len != 0)) {
            return Ok(Check::Bad("not a record header"));
        }
        let total = RECORD_HEADER_LEN + len;
        let start_off = self.offset + skip as u64;
        if start_off.saturating_add(total as u64) > self.end {
            return Ok(Check::Incomplete("incomplete record payload"));
        }
        if self.fill(skip + total)? < skip + total {
            return Ok(Check::Incomplete("incomplete record payload"));
        }
        let at = self.pos + skip;
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&self.buf[at + 8..at + total]);
        if hasher.finalize() != crc {
            return Ok(Check::Bad("checksum mismatch"));
        }
        Ok(Check::Valid(total))
    }

    /// Scans forward from the bad record at `pos` for the next valid one. `true` when
    /// one was found (the region before it is recorded as damage and `pos` is at it);
    /// `false` when none follows (a torn tail, recorded).
    fn resync(&mut self, reason: &'static str) -> Result<bool, CaptureError> {
        let start = self.offset;
        let mut skip = 1usize;
        loop {
            // Drop what was scanned past, so a long damaged region takes no memory.
            if skip > (1 << 20) {
                self.pos += skip - 1;
                self.offset += (skip - 1) as u64;
                skip = 1;
            }
            if self.fill(skip + RECORD_HEADER_LEN)? < skip + RECORD_HEADER_LEN {
                let scanned = self.offset - start;
                let rest = self.drain()?;
                // The good part ends where the bad record began.
                self.offset = start;
                self.torn = Some(TornTail {
                    offset: start,
                    trailing_bytes: scanned + rest,
                    reason,
                });
                return Ok(false);
            }
            // A cheap filter first: the reserved bytes of a header are zero and the
            // venue code small; most positions fail here.
            let at = self.pos + skip;
            let h = &self.buf[at..at + RECORD_HEADER_LEN];
            if h[22] == 0 && h[23] == 0 && h[17] <= 1 && Venue::from_code(h[16]).is_some() {
                if let Check::Valid(_) = self.check(skip, true)? {
                    let len = self.offset + skip as u64 - start;
                    self.pos += skip;
                    self.offset += skip as u64;
                    self.damaged_bytes += len;
                    self.damaged_regions += 1;
                    if self.damage.len() < MAX_DAMAGE_KEPT {
                        self.damage.push(Damage {
                            offset: start,
                            len,
                            reason,
                        });
                    }
                    return Ok(true);
                }
            }
            skip += 1;
        }
    }

    /// The next good record, or `None` at the end or at a torn tail (then
    /// [`CaptureReader::torn`] says where and why). A damaged region in between is
    /// skipped and reported in [`CaptureReader::damage`].
    pub fn next_record(&mut self) -> Result<Option<Record<'_>>, CaptureError> {
        loop {
            if self.torn.is_some() || self.offset >= self.end {
                return Ok(None);
            }
            match self.check(0, false)? {
                Check::Valid(total) => {
                    let at = self.pos;
                    self.pos += total;
                    self.offset += total as u64;
                    let h = &self.buf[at..at + RECORD_HEADER_LEN];
                    let tag_len = u16::from_le_bytes([h[20], h[21]]) as usize;
                    let recv_ts_ns = i64::from_le_bytes(h[8..16].try_into().expect("8"));
                    let venue = Venue::from_code(h[16]).expect("checked");
                    let kind = if h[17] == 1 {
                        RecordKind::RestDepth
                    } else {
                        RecordKind::Ws
                    };
                    let conn = u16::from_le_bytes([h[18], h[19]]);
                    let payload = &self.buf[at + RECORD_HEADER_LEN..at + total];
                    return Ok(Some(Record {
                        recv_ts_ns,
                        venue,
                        kind,
                        conn,
                        tag: &payload[..tag_len],
                        data: &payload[tag_len..],
                    }));
                }
                Check::Incomplete(reason) | Check::Bad(reason) => {
                    if self.fill(1)? == 0 {
                        // Nothing at all is left: the clean end.
                        return Ok(None);
                    }
                    if !self.resync(reason)? {
                        return Ok(None);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("hermes-cap-{}-{}", name, std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d.join("c.hcap")
    }

    fn rec(i: i64) -> Vec<u8> {
        format!("{{\"n\":{i}}}").into_bytes()
    }

    #[test]
    fn round_trip_and_torn_tail_is_cut() {
        let path = tmp("torn");
        let mut w = CaptureWriter::create(&path).unwrap();
        for i in 0..100 {
            let d = rec(i);
            let kind = if i == 5 {
                RecordKind::RestDepth
            } else {
                RecordKind::Ws
            };
            let tag: &[u8] = if i == 5 { b"BTCUSDT" } else { b"" };
            w.append(&Record {
                recv_ts_ns: i,
                venue: Venue::Binance,
                kind,
                conn: 3,
                tag,
                data: &d,
            })
            .unwrap();
        }
        w.sync().unwrap();
        let good_len = w.offset();
        drop(w);
        // Simulate a crash mid-write: half of a record.
        let mut bytes = std::fs::read(&path).unwrap();
        let full = bytes.len();
        assert_eq!(full as u64, good_len);
        bytes.extend_from_slice(&[9, 0, 0, 0, 1, 2, 3]);
        std::fs::write(&path, &bytes).unwrap();

        let mut r = CaptureReader::open(&path).unwrap();
        let mut n = 0;
        while let Some(rec) = r.next_record().unwrap() {
            assert_eq!(rec.recv_ts_ns, n);
            assert_eq!(rec.conn, 3);
            if n == 5 {
                assert_eq!(rec.kind, RecordKind::RestDepth);
                assert_eq!(rec.tag, b"BTCUSDT");
            }
            assert_eq!(rec.data, super::tests::rec(n).as_slice());
            n += 1;
        }
        assert_eq!(n, 100);
        let torn = r.torn().unwrap().clone();
        assert_eq!(torn.offset, good_len);
        assert_eq!(torn.trailing_bytes, 7);

        let (mut w, cut) = CaptureWriter::open_append(&path).unwrap();
        assert_eq!(cut.torn.unwrap().offset, good_len);
        let d = rec(100);
        w.append(&Record {
            recv_ts_ns: 100,
            venue: Venue::Coinbase,
            kind: RecordKind::Ws,
            conn: 0,
            tag: b"",
            data: &d,
        })
        .unwrap();
        w.flush().unwrap();
        let mut r = CaptureReader::open(&path).unwrap();
        let mut n = 0;
        while r.next_record().unwrap().is_some() {
            n += 1;
        }
        assert_eq!(n, 101);
        assert!(r.torn().is_none());
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn corrupt_byte_stops_with_checksum_error() {
        let path = tmp("crc");
        let mut w = CaptureWriter::create(&path).unwrap();
        for i in 0..10 {
            let d = rec(i);
            w.append(&Record {
                recv_ts_ns: i,
                venue: Venue::Coinbase,
                kind: RecordKind::Ws,
                conn: 0,
                tag: b"",
                data: &d,
            })
            .unwrap();
        }
        w.flush().unwrap();
        drop(w);
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.len() - 3;
        bytes[at] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let mut r = CaptureReader::open(&path).unwrap();
        let mut n = 0;
        while r.next_record().unwrap().is_some() {
            n += 1;
        }
        assert_eq!(n, 9);
        assert_eq!(r.torn().unwrap().reason, "checksum mismatch");
        std::fs::write(&path, b"{\"not\":\"a capture\"}\n").unwrap();
        let e = CaptureReader::open(&path).err().unwrap();
        assert!(e.to_string().contains("not a Hermes capture"), "{e}");
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    fn write_n(path: &Path, n: i64) -> Vec<u64> {
        let mut w = CaptureWriter::create(path).unwrap();
        let mut offsets = Vec::new();
        for i in 0..n {
            offsets.push(w.offset());
            let d = format!(
                "{{\"n\":{i},\"pad\":\"{}\"}}",
                "x".repeat((i % 97) as usize)
            );
            w.append(&Record {
                recv_ts_ns: i,
                venue: Venue::Binance,
                kind: RecordKind::Ws,
                conn: 1,
                tag: b"",
                data: d.as_bytes(),
            })
            .unwrap();
        }
        w.flush().unwrap();
        offsets
    }

    fn read_all(r: &mut CaptureReader) -> Vec<i64> {
        let mut out = Vec::new();
        while let Some(rec) = r.next_record().unwrap() {
            out.push(rec.recv_ts_ns);
        }
        out
    }

    /// Records per test file: fewer under Miri, which interprets every byte.
    const N: i64 = if cfg!(miri) { 240 } else { 3000 };

    #[test]
    fn a_flipped_byte_mid_file_skips_one_record_and_reads_the_rest() {
        let path = tmp("flip");
        let offsets = write_n(&path, N);
        let mut bytes = std::fs::read(&path).unwrap();
        let victim = N as usize / 3;
        let at = offsets[victim] as usize + RECORD_HEADER_LEN + 3;
        bytes[at] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let mut r = CaptureReader::open(&path).unwrap();
        let got = read_all(&mut r);
        let want: Vec<i64> = (0..N).filter(|&i| i != victim as i64).collect();
        assert_eq!(got, want);
        assert!(r.torn().is_none());
        let d = &r.damage()[0];
        assert_eq!(d.offset, offsets[victim]);
        assert_eq!(d.len, offsets[victim + 1] - offsets[victim]);
        assert_eq!(d.reason, "checksum mismatch");
        assert_eq!((r.damaged_regions(), r.damaged_bytes()), (1, d.len));

        // Reopening for append keeps every byte (nothing is cut) and copies the damaged
        // record aside.
        let len = bytes.len() as u64;
        let (w, found) = CaptureWriter::open_append(&path).unwrap();
        assert_eq!(w.offset(), len);
        assert!(found.torn.is_none());
        assert_eq!(found.damage.len(), 1);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), len);
        let aside = std::fs::read(&found.kept_aside[0]).unwrap();
        assert_eq!(
            aside,
            &bytes[offsets[victim] as usize..offsets[victim + 1] as usize]
        );
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn inserted_garbage_mid_file_loses_no_record() {
        let path = tmp("insert");
        let offsets = write_n(&path, N);
        let (first, second) = (N as usize / 4, N as usize * 3 / 4);
        let mut bytes = std::fs::read(&path).unwrap();
        let at = offsets[first] as usize;
        bytes.splice(at..at, [0xffu8; 4]);
        // And a damaged length field further on: a length that points past the end.
        let at2 = offsets[second] as usize + 4; // shifted by the 4 inserted bytes
        bytes[at2..at2 + 4].copy_from_slice(&(100u32 << 20).to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        let mut r = CaptureReader::open(&path).unwrap();
        let got = read_all(&mut r);
        let want: Vec<i64> = (0..N).filter(|&i| i != second as i64).collect();
        assert_eq!(got, want);
        assert_eq!(r.damage()[0].offset, offsets[first]);
        assert_eq!(r.damage()[0].len, 4);
        assert_eq!(r.damaged_regions(), 2);
        assert!(r.torn().is_none());
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    /// A reader that hands out a few bytes at a time, as a pipe does.
    struct Trickle(Vec<u8>, usize, usize);
    impl Read for Trickle {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            self.2 = self.2 % 7 + 1;
            let n = self.2.min(out.len()).min(self.0.len() - self.1);
            out[..n].copy_from_slice(&self.0[self.1..self.1 + n]);
            self.1 += n;
            Ok(n)
        }
    }

    #[test]
    fn a_stream_reads_like_the_file_damage_and_torn_tail_included() {
        let path = tmp("stream");
        let offsets = write_n(&path, N / 6);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[offsets[N as usize / 30] as usize + 30] ^= 1;
        bytes.extend_from_slice(&[7, 0, 0, 0, 1]); // an incomplete header at the end
        std::fs::write(&path, &bytes).unwrap();
        let mut f = CaptureReader::open(&path).unwrap();
        let from_file = read_all(&mut f);
        let mut s =
            CaptureReader::from_reader(Box::new(Trickle(bytes.clone(), 0, 0)), &path).unwrap();
        let from_stream = read_all(&mut s);
        assert_eq!(from_file, from_stream);
        assert_eq!(from_file.len() as i64, N / 6 - 1);
        assert_eq!(f.damage(), s.damage());
        assert_eq!(f.torn(), s.torn());
        let t = s.torn().unwrap();
        assert_eq!(
            (t.trailing_bytes, t.reason),
            (5, "incomplete record header")
        );
        assert_eq!(s.offset(), bytes.len() as u64 - 5);
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn a_corrupt_last_record_is_kept_aside_an_incomplete_one_just_cut() {
        let path = tmp("tail");
        let offsets = write_n(&path, 50);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = offsets[49] as usize;
        bytes[last + RECORD_HEADER_LEN + 1] ^= 0x20;
        std::fs::write(&path, &bytes).unwrap();
        let (w, found) = CaptureWriter::open_append(&path).unwrap();
        assert_eq!(w.offset(), last as u64);
        assert_eq!(found.torn.as_ref().unwrap().reason, "checksum mismatch");
        assert_eq!(std::fs::read(&found.kept_aside[0]).unwrap(), &bytes[last..]);
        drop(w);
        // An incomplete record (a crash mid-write) is cut without a copy.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&[40, 0, 0, 0, 9, 9, 9, 9, 1]);
        std::fs::write(&path, &bytes).unwrap();
        let (w, found) = CaptureWriter::open_append(&path).unwrap();
        assert_eq!(w.offset(), last as u64);
        assert!(found.kept_aside.is_empty());
        assert_eq!(found.torn.unwrap().trailing_bytes, 9);
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn tailing_reads_only_to_the_published_end() {
        let path = tmp("tail-end");
        let offsets = write_n(&path, 100);
        let mut r = CaptureReader::open(&path).unwrap();
        r.set_end(offsets[40]);
        assert_eq!(read_all(&mut r).len(), 40);
        assert!(r.torn().is_none() && r.damage().is_empty());
        r.set_end(std::fs::metadata(&path).unwrap().len());
        assert_eq!(read_all(&mut r), (40..100).collect::<Vec<_>>());
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
}
