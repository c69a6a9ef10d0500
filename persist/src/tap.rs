//! The ingest side: [`PersistTap`] copies every raw frame into the persister's own SPSC
//! byte ring, and the journal thread drains that ring into the journal.
//!
//! Ring protocol: each frame is a 24-byte header (data length `u32`, tag length `u16`,
//! venue `u8`, kind `u8`, connection `u16`, 6 reserved bytes, receive time `i64`, all
//! little-endian) followed by the tag and the data. The tap writes it in as many pieces
//! as the free space allows, so a frame larger than the ring still passes; the journal
//! thread reassembles it. The ring never drops: when it is full the tap waits (spin, then
//! yield, then short sleeps) and counts the wait in [`PersistStats::ring_full_waits`].
//! The tap allocates nothing and makes no system call unless it has to wait.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hermes_ingest::capture::{CaptureWriter, Record, RecordKind};
use hermes_ingest::{Frame, FrameKind, FrameTap, Venue};

use crate::stats::PersistStats;

const HDR: usize = 24;

/// What the journal thread shares with the database thread.
#[derive(Debug, Default)]
pub(crate) struct JournalShared {
    /// Offset in the current segment up to which records are written to the file (a
    /// record boundary). Release-stored by the journal thread after the bytes are handed
    /// to the kernel; Acquire-loaded by the database thread before reading up to it.
    pub(crate) end: AtomicU64,
    /// Set (Release) once the ring was abandoned and drained: `end` is final.
    pub(crate) done: AtomicBool,
}

/// The persister's [`FrameTap`]: give it to the ingest loop (e.g. `replay::replay`).
/// Dropping it tells the persister that no more frames come.
pub struct PersistTap {
    tx: rtrb::Producer<u8>,
    stats: Arc<PersistStats>,
    frames: u64,
    lost: u64,
}

impl std::fmt::Debug for PersistTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersistTap")
            .field("frames", &self.frames)
            .finish()
    }
}

impl PersistTap {
    pub(crate) fn new(tx: rtrb::Producer<u8>, stats: Arc<PersistStats>) -> PersistTap {
        PersistTap {
            tx,
            stats,
            frames: 0,
            lost: 0,
        }
    }

    /// Frames taken so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Frames the persister could not take because its journal thread died (a journal
    /// I/O error, reported in [`PersistStats::last_error`]). Always 0 otherwise.
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// Pushes all of `bytes`, waiting for room; `false` if the consumer is gone.
    #[inline]
    fn push_all(&mut self, mut bytes: &[u8]) -> bool {
        let mut round = 0u32;
        while !bytes.is_empty() {
            let (_, rest) = self.tx.push_partial_slice(bytes);
            if rest.len() < bytes.len() {
                round = 0;
            } else {
                if self.tx.is_abandoned() {
                    return false;
                }
                if round == 0 {
                    // Relaxed: a statistic.
                    self.stats.ring_full_waits.fetch_add(1, Ordering::Relaxed);
                }
                round += 1;
                if round < 64 {
                    std::hint::spin_loop();
                } else if round < 128 {
                    std::thread::yield_now();
                } else {
                    std::thread::sleep(Duration::from_micros(50 << (round - 128).min(4)));
                }
            }
            bytes = rest;
        }
        true
    }
}

impl FrameTap for PersistTap {
    #[inline]
    fn frame(&mut self, frame: &Frame<'_>) {
        let (kind, tag): (u8, &[u8]) = match frame.kind {
            FrameKind::Ws => (RecordKind::Ws as u8, b""),
            FrameKind::RestDepth { symbol } => (RecordKind::RestDepth as u8, symbol),
        };
        let mut h = [0u8; HDR];
        h[0..4].copy_from_slice(&(frame.data.len().min(u32::MAX as usize) as u32).to_le_bytes());
        h[4..6].copy_from_slice(&(tag.len().min(u16::MAX as usize) as u16).to_le_bytes());
        h[6] = frame.venue as u8;
        h[7] = kind;
        h[8..10].copy_from_slice(&frame.conn.to_le_bytes());
        h[16..24].copy_from_slice(&frame.recv_ts_ns.to_le_bytes());
        let data = &frame.data[..frame.data.len().min(u32::MAX as usize)];
        let tag = &tag[..tag.len().min(u16::MAX as usize)];
        let ok = self.push_all(&h) && self.push_all(tag) && self.push_all(data);
        if ok {
            self.frames += 1;
            if self.frames & 1023 == 0 {
                // Relaxed: a statistic.
                self.stats.frames_in.store(self.frames, Ordering::Relaxed);
            }
        } else {
            self.lost += 1;
        }
    }
}

impl Drop for PersistTap {
    fn drop(&mut self) {
        // Relaxed: the final count, read after the persister is joined.
        self.stats.frames_in.store(self.frames, Ordering::Relaxed);
    }
}

/// Drains the ring into the journal until the tap is dropped and the ring is empty.
pub(crate) fn journal_thread(
    mut rx: rtrb::Consumer<u8>,
    mut w: CaptureWriter,
    shared: Arc<JournalShared>,
    stats: Arc<PersistStats>,
) -> Result<(), crate::PersistError> {
    let mut hdr = [0u8; HDR];
    let mut hdr_fill = 0usize;
    let mut payload: Vec<u8> = Vec::with_capacity(1 << 16);
    let mut payload_fill = 0usize;
    let mut in_payload = false;
    let mut unflushed = 0usize;
    let mut idle = 0u32;
    let publish = |w: &mut CaptureWriter| -> Result<(), crate::PersistError> {
        w.flush()?;
        // Release: pairs with the database thread's Acquire load; the bytes up to here
        // were written to the file (flush returned) before the offset is published.
        shared.end.store(w.offset(), Ordering::Release);
        PersistStats::set(&stats.journal_bytes, w.offset());
        Ok(())
    };
    let result = loop {
        let mut progressed = false;
        if !in_payload {
            let (done, _) = rx.pop_partial_slice(&mut hdr[hdr_fill..]);
            if !done.is_empty() {
                progressed = true;
            }
            hdr_fill += done.len();
            if hdr_fill == HDR {
                let len = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]) as usize
                    + u16::from_le_bytes([hdr[4], hdr[5]]) as usize;
                payload.resize(len, 0);
                payload_fill = 0;
                in_payload = true;
            }
        }
        if in_payload {
            let (done, _) = rx.pop_partial_slice(&mut payload[payload_fill..]);
            if !done.is_empty() {
                progressed = true;
            }
            payload_fill += done.len();
            if payload_fill == payload.len() {
                in_payload = false;
                hdr_fill = 0;
                let tag_len = u16::from_le_bytes([hdr[4], hdr[5]]) as usize;
                let venue = Venue::from_code(hdr[6]).unwrap_or(Venue::Webhook);
                let kind = if hdr[7] == RecordKind::RestDepth as u8 {
                    RecordKind::RestDepth
                } else {
                    RecordKind::Ws
                };
                let rec = Record {
                    recv_ts_ns: i64::from_le_bytes(hdr[16..24].try_into().unwrap_or([0; 8])),
                    venue,
                    kind,
                    conn: u16::from_le_bytes([hdr[8], hdr[9]]),
                    tag: &payload[..tag_len],
                    data: &payload[tag_len..],
                };
                match w.append(&rec) {
                    Ok(_) => {
                        PersistStats::add(&stats.journal_records, 1);
                        unflushed += HDR + payload.len();
                    }
                    Err(hermes_ingest::capture::CaptureError::TooLarge { len }) => {
                        let msg = format!(
                            "a {len}-byte frame exceeds the journal's record limit and was not journaled"
                        );
                        tracing::error!("{msg}");
                        stats.set_error(msg);
                    }
                    Err(e) => break Err(e.into()),
                }
                if unflushed >= 256 << 10 {
                    if let Err(e) = publish(&mut w) {
                        break Err(e);
                    }
                    unflushed = 0;
                }
            }
        }
        if progressed {
            idle = 0;
            continue;
        }
        if unflushed > 0 {
            if let Err(e) = publish(&mut w) {
                break Err(e);
            }
            unflushed = 0;
        }
        if rx.is_abandoned() && rx.is_empty() {
            // The tap is gone and everything it pushed was popped.
            break Ok(());
        }
        idle += 1;
        if idle < 64 {
            std::hint::spin_loop();
        } else if idle < 128 {
            std::thread::yield_now();
        } else {
            std::thread::sleep(Duration::from_micros(50 << (idle - 128).min(4)));
        }
    };
    let result = result.and_then(|()| publish(&mut w));
    if let Err(e) = &result {
        let msg = format!("journal write failed, frames are no longer kept: {e}");
        tracing::error!("{msg}");
        stats.set_error(msg);
    }
    // Release: pairs with the database thread's Acquire load of `done`; `end` is final.
    shared.done.store(true, Ordering::Release);
    result
}
