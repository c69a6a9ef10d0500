//! The native capture format: append-only, length-prefixed, checksummed records of raw
//! frames with their receive time, venue and connection. Byte layout in
//! `ingest/CAPTURE.md`.
//!
//! A crash can leave a torn last record; [`CaptureReader`] stops at the first record that
//! is incomplete or fails its checksum and reports the offset, and
//! [`CaptureWriter::open_append`] cuts the file there before appending.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
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
        out.write_all(&file_header()).map_err(io)?;
        // A reader may open the file as soon as it exists (the persister tails its
        // journal): the header is on disk before anyone can look.
        out.flush().map_err(io)?;
        Ok(CaptureWriter {
            out,
            path: path.to_path_buf(),
            offset: FILE_HEADER_LEN as u64,
        })
    }

    /// Opens an existing capture for appending (creating it if absent). A torn or
    /// corrupt tail is cut first and returned so the caller can report it.
    pub fn open_append(path: &Path) -> Result<(CaptureWriter, Option<TornTail>), CaptureError> {
        if !path.exists() {
            return Ok((CaptureWriter::create(path)?, None));
        }
        let io = |source| CaptureError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut reader = CaptureReader::open(path)?;
        while reader.next_record()?.is_some() {}
        let good = reader.offset();
        let torn = reader.torn().cloned();
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(io)?;
        if torn.is_some() {
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
            torn,
        ))
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

/// Reads records in order, reusing one buffer (no allocation per record).
pub struct CaptureReader {
    input: BufReader<File>,
    path: PathBuf,
    offset: u64,
    len: u64,
    buf: Vec<u8>,
    torn: Option<TornTail>,
}

impl CaptureReader {
    /// Opens a capture and checks its header.
    pub fn open(path: &Path) -> Result<CaptureReader, CaptureError> {
        let io = |source| CaptureError::Io {
            path: path.display().to_string(),
            source,
        };
        let f = File::open(path).map_err(io)?;
        let len = f.metadata().map_err(io)?.len();
        let mut input = BufReader::with_capacity(1 << 20, f);
        let mut h = [0u8; FILE_HEADER_LEN];
        if input.read_exact(&mut h).is_err() {
            return Err(CaptureError::BadMagic {
                path: path.display().to_string(),
            });
        }
        check_header(path, &h)?;
        Ok(CaptureReader {
            input,
            path: path.to_path_buf(),
            offset: FILE_HEADER_LEN as u64,
            len,
            buf: Vec::new(),
            torn: None,
        })
    }

    /// Offset of the next record (just past the last good one).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Reads no further than `end`: for tailing a file that a writer is still appending
    /// to, `end` being a record boundary the writer has flushed
    /// ([`CaptureWriter::offset`] after [`CaptureWriter::flush`]). Records past `end`
    /// become readable after a later call with a larger `end`. (The persister reads its
    /// journal this way while the journal thread appends.)
    pub fn set_end(&mut self, end: u64) {
        self.len = end;
    }

    /// Set once reading stopped at a torn or corrupt record.
    pub fn torn(&self) -> Option<&TornTail> {
        self.torn.as_ref()
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn stop(&mut self, reason: &'static str) -> Result<Option<Record<'_>>, CaptureError> {
        self.torn = Some(TornTail {
            offset: self.offset,
            trailing_bytes: self.len.saturating_sub(self.offset),
            reason,
        });
        Ok(None)
    }

    /// The next good record, or `None` at the end or at a torn/corrupt tail (then
    /// [`CaptureReader::torn`] says where and why).
    pub fn next_record(&mut self) -> Result<Option<Record<'_>>, CaptureError> {
        if self.torn.is_some() || self.offset >= self.len {
            return Ok(None);
        }
        let mut h = [0u8; RECORD_HEADER_LEN];
        if self.len - self.offset < RECORD_HEADER_LEN as u64 {
            return self.stop("incomplete record header");
        }
        self.input
            .read_exact(&mut h)
            .map_err(|source| CaptureError::Io {
                path: self.path.display().to_string(),
                source,
            })?;
        let len = u32::from_le_bytes(h[0..4].try_into().expect("4")) as usize;
        let crc = u32::from_le_bytes(h[4..8].try_into().expect("4"));
        let tag_len = u16::from_le_bytes([h[20], h[21]]) as usize;
        if len > MAX_PAYLOAD || tag_len > len {
            return self.stop("impossible record length (corrupt header)");
        }
        if self.len - self.offset - (RECORD_HEADER_LEN as u64) < len as u64 {
            return self.stop("incomplete record payload");
        }
        self.buf.resize(len, 0);
        self.input
            .read_exact(&mut self.buf)
            .map_err(|source| CaptureError::Io {
                path: self.path.display().to_string(),
                source,
            })?;
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&h[8..]);
        hasher.update(&self.buf);
        if hasher.finalize() != crc {
            return self.stop("checksum mismatch");
        }
        let (Some(venue), kind) = (Venue::from_code(h[16]), h[17]) else {
            return self.stop("unknown venue code");
        };
        let kind = match kind {
            0 => RecordKind::Ws,
            1 => RecordKind::RestDepth,
            _ => return self.stop("unknown record kind"),
        };
        self.offset += (RECORD_HEADER_LEN + len) as u64;
        Ok(Some(Record {
            recv_ts_ns: i64::from_le_bytes(h[8..16].try_into().expect("8")),
            venue,
            kind,
            conn: u16::from_le_bytes([h[18], h[19]]),
            tag: &self.buf[..tag_len],
            data: &self.buf[tag_len..],
        }))
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
        assert_eq!(cut.unwrap().offset, good_len);
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
}
