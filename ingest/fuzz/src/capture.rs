//! The `capture` target: [`Source`], the replay input, over every format it reads.
//!
//! Input: one selector byte, then the file's bytes. The selector's bits 0-1 choose the
//! format (auto, native, JSON lines, auto), bits 2-3 the venue option (none, Coinbase,
//! Binance, none), bit 4 a `--symbol` for REST lines, bits 5-6 the file name's
//! extension (none, `.gz`, `.zst`, none), so compressed input goes through the same
//! decompressors as `hermes replay`. Every frame read goes through a [`Decoder`], as in a
//! replay; a bad line is skipped, an I/O or capture error ends the file.
//!
//! Properties, besides never panicking and bounded allocation:
//! * A native capture's records, written back with [`CaptureWriter`] and read again, are
//!   the same frames, with no torn tail.
//! * Reading stops at a torn tail exactly where the good records end: its offset is the
//!   reader's, and offset + trailing bytes is the file's length; without one, reading
//!   ends at the file's end.
//! * Line numbers only grow.

use hermes_ingest::capture::{
    CaptureWriter, Record, RecordKind, FILE_HEADER_LEN, MAGIC, RECORD_HEADER_LEN,
};
use hermes_ingest::source::{Format, Position, Source, SourceError, SourceOptions};
use hermes_ingest::{Decoder, Event, Frame, FrameKind, Venue};

use crate::{scratch, Mutate};

/// Frames read from one input at most.
const MAX_FRAMES: usize = 4096;

/// A frame copied out of the reader.
#[derive(Clone, Debug, PartialEq, Eq)]
struct OwnedFrame {
    venue: Venue,
    rest_symbol: Option<Vec<u8>>,
    conn: u16,
    recv_ts_ns: i64,
    data: Vec<u8>,
}

impl OwnedFrame {
    fn of(f: &Frame<'_>) -> OwnedFrame {
        OwnedFrame {
            venue: f.venue,
            rest_symbol: match f.kind {
                FrameKind::RestDepth { symbol } => Some(symbol.to_vec()),
                FrameKind::Ws => None,
            },
            conn: f.conn,
            recv_ts_ns: f.recv_ts_ns,
            data: f.data.to_vec(),
        }
    }
}

/// Everything read from `src`: the frames (copied when `keep`), whether it reached its
/// end (rather than [`MAX_FRAMES`] or an error).
fn read_all(src: &mut Source, keep: bool) -> (Vec<OwnedFrame>, bool) {
    let mut dec = Decoder::default();
    let mut events: Vec<Event> = Vec::new();
    let mut frames = Vec::new();
    let mut last_line = 0;
    for _ in 0..MAX_FRAMES {
        match src.next_frame() {
            Ok(Some(f)) => {
                events.clear();
                let _ = dec.decode(&f, &mut events);
                if keep {
                    frames.push(OwnedFrame::of(&f));
                }
            }
            Ok(None) => return (frames, true),
            // One unusable line: replay counts it and goes on.
            Err(SourceError::BadLine { .. }) => {}
            Err(_) => return (frames, false),
        }
        if let Position::Line(n) = src.position() {
            assert!(
                n >= last_line,
                "line numbers went back from {last_line} to {n}"
            );
            last_line = n;
        }
    }
    (frames, false)
}

/// Runs the `capture` target on `input`.
pub fn run(input: &[u8]) {
    let Some((&sel, body)) = input.split_first() else {
        return;
    };
    let opts = SourceOptions {
        format: match sel & 3 {
            1 => Format::Native,
            2 => Format::Jsonl,
            _ => Format::Auto,
        },
        venue: match (sel >> 2) & 3 {
            1 => Some(Venue::Coinbase),
            2 => Some(Venue::Binance),
            _ => None,
        },
        symbol: (sel & 0x10 != 0).then(|| "SYN0USDT".to_string()),
        ..SourceOptions::default()
    };
    let name = match (sel >> 5) & 3 {
        1 => "capture.gz",
        2 => "capture.zst",
        _ => "capture",
    };
    let path = scratch::write(name, body);
    let Ok(mut src) = Source::open(&path, &opts) else {
        return;
    };
    let native = matches!(src, Source::Native(_));
    let (frames, ended) = read_all(&mut src, native);
    // Compression is told by content: the byte accounting below is for plain files.
    let compressed = body.starts_with(&[0x1f, 0x8b]) || body.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]);
    if !native || compressed {
        return;
    }
    // Damaged regions are in order, apart, and inside the file.
    let (damage, regions, bytes) = src.damage();
    let mut prev_end = 0u64;
    for d in damage {
        assert!(d.len > 0 && d.offset >= prev_end, "damage out of order: {damage:?}");
        prev_end = d.offset + d.len;
    }
    assert!(prev_end <= body.len() as u64, "damage past the end: {damage:?}");
    assert!(regions as usize >= damage.len() && bytes >= damage.iter().map(|d| d.len).sum::<u64>());
    let Position::Byte(offset) = src.position() else {
        panic!("a native source reports a line");
    };
    let len = body.len() as u64;
    match src.torn() {
        Some(t) => {
            assert_eq!(
                t.offset, offset,
                "torn tail {t:?} is not where reading stopped"
            );
            assert_eq!(
                t.offset + t.trailing_bytes,
                len,
                "torn tail {t:?} of a {len}-byte file"
            );
        }
        None if ended => assert_eq!(offset, len, "reading ended before the end, no torn tail"),
        None => {}
    }

    if frames.len() == MAX_FRAMES {
        return;
    }
    // Written back and read again: the same frames.
    let copy = scratch::path("capture-copy");
    let mut w = CaptureWriter::create(&copy).expect("creating the copy");
    for f in &frames {
        w.append(&Record {
            recv_ts_ns: f.recv_ts_ns,
            venue: f.venue,
            kind: if f.rest_symbol.is_some() {
                RecordKind::RestDepth
            } else {
                RecordKind::Ws
            },
            conn: f.conn,
            tag: f.rest_symbol.as_deref().unwrap_or(b""),
            data: &f.data,
        })
        .expect("appending a record that was just read");
    }
    w.flush().expect("flushing the copy");
    let written = w.offset();
    drop(w);
    let mut again = Source::open(
        &copy,
        &SourceOptions {
            format: Format::Native,
            ..SourceOptions::default()
        },
    )
    .expect("opening the copy");
    let (frames2, ended2) = read_all(&mut again, true);
    assert!(
        ended2 && again.torn().is_none(),
        "the copy does not read to its end"
    );
    assert_eq!(again.position(), Position::Byte(written));
    assert!(frames2 == frames, "records written back read differently");
}

/// Recomputes the checksum of every complete record of a native capture (after the
/// selector byte), so that a mutated record is read and decoded.
fn fix_checksums(input: &mut [u8]) {
    let Some(file) = input.get_mut(1..) else {
        return;
    };
    if !file.starts_with(&MAGIC) {
        return;
    }
    let mut off = FILE_HEADER_LEN;
    while off + RECORD_HEADER_LEN <= file.len() {
        let len = u32::from_le_bytes(file[off..off + 4].try_into().expect("4 bytes")) as usize;
        let Some(end) = (off + RECORD_HEADER_LEN)
            .checked_add(len)
            .filter(|&e| e <= file.len())
        else {
            return;
        };
        let mut crc = crc32fast::Hasher::new();
        crc.update(&file[off + 8..off + RECORD_HEADER_LEN]);
        crc.update(&file[off + RECORD_HEADER_LEN..end]);
        file[off + 4..off + 8].copy_from_slice(&crc.finalize().to_le_bytes());
        off = end;
    }
}

/// The `capture` target's mutation: libFuzzer's own (`fallback`), then, three times out
/// of four, every record of a native capture given its correct checksum again. Without
/// this, any change to a record only tests the torn-tail stop at its checksum.
pub fn mutate(data: &mut [u8], size: usize, max_size: usize, seed: u32, fallback: Mutate) -> usize {
    let n = fallback(data, size, max_size);
    if !seed.is_multiple_of(4) {
        fix_checksums(&mut data[..n]);
    }
    n
}
