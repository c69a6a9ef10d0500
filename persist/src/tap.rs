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
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hermes_ingest::capture::{CaptureWriter, Record, RecordKind};
use hermes_ingest::{Frame, FrameKind, FrameTap, Venue};

use crate::stats::PersistStats;

const HDR: usize = 24;

/// Bits of [`JournalShared::end`] that hold the offset; the segment number is above.
pub(crate) const OFFSET_BITS: u32 = 40;

/// `(segment number, offset)` packed into one word.
pub(crate) fn pack(number: u64, offset: u64) -> u64 {
    (number << OFFSET_BITS) | (offset & ((1 << OFFSET_BITS) - 1))
}

/// The inverse of [`pack`].
pub(crate) fn unpack(end: u64) -> (u64, u64) {
    (end >> OFFSET_BITS, end & ((1 << OFFSET_BITS) - 1))
}

/// What the journal thread shares with the journal's readers (the database thread, the
/// Parquet sink).
#[derive(Debug, Default)]
pub(crate) struct JournalShared {
    /// [`pack`]`(number, offset)`: the segment being written, and the offset up to which
    /// its records are written to the file (a record boundary). Release-stored by the
    /// journal thread after the bytes are handed to the kernel (and, at a rotation, after
    /// the new segment is in `segments`); Acquire-loaded by readers before reading up to
    /// it. A segment with a smaller number is sealed: its file length is final.
    pub(crate) end: AtomicU64,
    /// Set (Release) once the ring was abandoned and drained: `end` is final.
    pub(crate) done: AtomicBool,
    /// Every segment of the journal, oldest first: the journal thread appends at a
    /// rotation and removes what retention deletes; the database thread moves another
    /// database's segments aside (their path changes, `foreign` is set).
    pub(crate) segments: Mutex<Vec<crate::JournalSegment>>,
    /// One mark per reader of this run: the number of the newest segment it has
    /// finished with (every older one too). Retention deletes only segments at or below
    /// every mark. Each mark is Release-stored by its reader after its commit and
    /// Acquire-loaded by the journal thread before it deletes.
    pub(crate) readers: Mutex<Vec<Arc<AtomicU64>>>,
    /// How many readers will register: retention deletes nothing before they all have.
    pub(crate) expected_readers: std::sync::atomic::AtomicUsize,
    /// The journal directory.
    pub(crate) dir: std::path::PathBuf,
}

impl JournalShared {
    /// A copy of the segment list.
    pub(crate) fn segments(&self) -> Vec<crate::JournalSegment> {
        self.segments.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// How the journal thread rotates and prunes segments.
#[derive(Clone, Debug)]
pub(crate) struct Rotation {
    /// The journal directory.
    pub(crate) dir: std::path::PathBuf,
    /// `Some` for a per-run stream (live ingest): segments may rotate. A replayed file
    /// is one segment (its records are numbered from its start).
    pub(crate) rotate: bool,
    /// Start a new segment past this many bytes...
    pub(crate) max_bytes: u64,
    /// ...or this long after the segment began.
    pub(crate) max_age: Duration,
    /// Delete a sealed segment every reader finished this long after its last write.
    pub(crate) retention: Duration,
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

/// The journal thread's writer and what it has to account for.
struct JournalWriter {
    w: Option<CaptureWriter>,
    number: u64,
    path: std::path::PathBuf,
    started: Instant,
    /// Offset published last: everything below it is in the file.
    published: u64,
    /// Records appended since the last publish, per venue: not kept if the flush fails.
    pending: [u64; Venue::ALL.len()],
    unflushed: usize,
    /// When the writer failed (frames are being dropped since), and when to try again.
    failed: Option<(Instant, Instant, String)>,
    shared: Arc<JournalShared>,
    stats: Arc<PersistStats>,
    rot: Rotation,
    last_janitor: Instant,
}

impl JournalWriter {
    fn append(&mut self, rec: &Record<'_>) {
        let Some(w) = self.w.as_mut() else {
            self.stats.count_not_kept(rec.venue, 1);
            return;
        };
        match w.append(rec) {
            Ok(_) => {
                PersistStats::add(&self.stats.journal_records, 1);
                self.pending[crate::stats::venue_slot(rec.venue)] += 1;
                self.unflushed += HDR + rec.tag.len() + rec.data.len();
            }
            Err(hermes_ingest::capture::CaptureError::TooLarge { len }) => {
                let msg = format!(
                    "a {len}-byte {} frame exceeds the journal's record limit and was not journaled",
                    rec.venue.name()
                );
                tracing::error!("{msg}");
                self.stats.set_error(msg);
                self.stats.count_not_kept(rec.venue, 1);
            }
            Err(e) => {
                self.stats.count_not_kept(rec.venue, 1);
                self.fail(&e.to_string());
            }
        }
    }

    /// A write failed: the records since the last publish are lost (their bytes are cut
    /// when writing resumes), and frames are counted as not kept until then.
    fn fail(&mut self, err: &str) {
        if let Some(w) = self.w.take() {
            w.abandon();
        }
        for (k, n) in self.pending.iter_mut().enumerate() {
            PersistStats::add(&self.stats.frames_not_kept[k], std::mem::take(n));
        }
        self.unflushed = 0;
        // Cut what a partial write left past the last published record now (a
        // truncation needs no space): a restart must not find records counted as lost.
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.path)
            .and_then(|f| f.set_len(self.published));
        let msg = if self.rot.rotate {
            format!(
                "journal {}: write failed ({err}): frames are NOT being kept (they are in shm, but will never reach the database); retrying every second",
                self.rot.dir.display()
            )
        } else {
            format!(
                "journal {}: write failed ({err}): the rest of this replay is NOT kept (it is in shm, but will not reach the database); replay the file again once there is space: it writes exactly what is missing",
                self.rot.dir.display()
            )
        };
        if self.failed.is_none() {
            tracing::error!("{msg}");
        }
        self.stats.set_error(msg.clone());
        self.stats.journal_failing.store(true, Ordering::Relaxed);
        let now = Instant::now();
        let since = self.failed.as_ref().map_or(now, |f| f.0);
        self.failed = Some((since, now + Duration::from_secs(1), msg));
    }

    /// Cuts the segment at the last published offset and appends again. Only for a live
    /// stream: a replayed file's records are numbered by their place in the journal,
    /// so its journal stops at the first loss and holds exactly a prefix of the file;
    /// replaying the file again then adds exactly the rest.
    fn try_resume(&mut self) {
        if !self.rot.rotate {
            return;
        }
        let Some((since, next, _)) = &self.failed else {
            return;
        };
        if Instant::now() < *next {
            return;
        }
        let since = *since;
        match CaptureWriter::resume_at(&self.path, self.published) {
            Ok(w) => {
                self.w = Some(w);
                self.failed = None;
                self.stats.journal_failing.store(false, Ordering::Relaxed);
                let msg = format!(
                    "journal {}: writing again after {:.1} s; {} frames were not kept in all ({})",
                    self.rot.dir.display(),
                    since.elapsed().as_secs_f64(),
                    self.stats.not_kept(),
                    self.stats.not_kept_by_venue()
                );
                tracing::warn!("{msg}");
                self.stats.set_error(msg);
            }
            Err(e) => self.fail(&e.to_string()),
        }
    }

    /// Flushes and publishes the new end.
    fn publish(&mut self) {
        let Some(w) = self.w.as_mut() else {
            return;
        };
        if let Err(e) = w.flush() {
            self.fail(&e.to_string());
            return;
        }
        self.published = w.offset();
        self.pending = [0; Venue::ALL.len()];
        self.unflushed = 0;
        // Release: pairs with the readers' Acquire load; the bytes up to here were
        // written to the file (flush returned) before the offset is published.
        self.shared
            .end
            .store(pack(self.number, self.published), Ordering::Release);
        PersistStats::set(&self.stats.journal_bytes, self.published);
        if self.rot.rotate
            && (self.published >= self.rot.max_bytes || self.started.elapsed() >= self.rot.max_age)
        {
            self.rotate();
        }
    }

    /// Seals the segment (synced) and starts the next one.
    fn rotate(&mut self) {
        let Some(w) = self.w.as_mut() else {
            return;
        };
        if let Err(e) = w.sync() {
            self.fail(&e.to_string());
            return;
        }
        let number = self.number + 1;
        let stream = format!("run-{number}-{}", crate::unix_ns() / 1_000_000);
        let name = format!("{number:08}.{stream}.hcap");
        let path = self.rot.dir.join(&name);
        let next = match CaptureWriter::create(&path) {
            Ok(w) => w,
            Err(e) => {
                // Stay on this segment; the next publish tries again.
                tracing::warn!("journal: could not start segment {name}: {e}");
                self.started = Instant::now();
                return;
            }
        };
        if let Ok(mut segs) = self.shared.segments.lock() {
            segs.push(crate::JournalSegment {
                number,
                name,
                path: path.clone(),
                stream,
                foreign: false,
            });
        }
        self.w = Some(next);
        self.number = number;
        self.path = path;
        self.started = Instant::now();
        self.published = hermes_ingest::capture::FILE_HEADER_LEN as u64;
        // Release: pairs with the readers' Acquire load; the new segment is in the list
        // before its number is published, and the old one is sealed (synced).
        self.shared
            .end
            .store(pack(number, self.published), Ordering::Release);
    }

    /// Deletes what retention allows and refreshes the journal size, once a second.
    fn janitor(&mut self, force: bool) {
        if !force && self.last_janitor.elapsed() < Duration::from_secs(1) {
            return;
        }
        self.last_janitor = Instant::now();
        prune(
            &self.shared,
            &self.stats,
            self.rot.retention,
            Some(self.number),
        );
    }
}

/// Retention: deletes sealed segments (older than `current`, or every segment when
/// `None`: the journal thread has ended) that every reader of this run finished with,
/// once `retention` has passed since their last write; then refreshes the journal's
/// size. Another database's segments (moved aside) are never deleted.
pub(crate) fn prune(
    shared: &JournalShared,
    stats: &PersistStats,
    retention: Duration,
    current: Option<u64>,
) {
    let finished = shared.readers.lock().ok().and_then(|r| {
        // Relaxed: set once before any thread starts.
        if r.len() < shared.expected_readers.load(Ordering::Relaxed) {
            return None;
        }
        // Acquire: pairs with each reader's Release store after its commit.
        r.iter().map(|m| m.load(Ordering::Acquire)).min()
    });
    let Ok(mut segs) = shared.segments.lock() else {
        return;
    };
    let now = std::time::SystemTime::now();
    let mut total = 0u64;
    let mut deleted = Vec::new();
    segs.retain(|s| {
        let meta = std::fs::metadata(&s.path).ok();
        let len = meta.as_ref().map_or(0, |m| m.len());
        let old_enough = meta
            .and_then(|m| m.modified().ok())
            .map(|t| now.duration_since(t).unwrap_or_default())
            .is_some_and(|age| age >= retention);
        let sealed = current.is_none_or(|c| s.number < c);
        let delete = sealed && !s.foreign && finished.is_some_and(|f| s.number <= f) && old_enough;
        if delete && std::fs::remove_file(&s.path).is_ok() {
            deleted.push(s.name.clone());
            return false;
        }
        if !s.foreign {
            total += len;
        }
        true
    });
    PersistStats::set(&stats.journal_dir_bytes, total);
    PersistStats::set(
        &stats.journal_segments,
        segs.iter().filter(|s| !s.foreign).count() as u64,
    );
    drop(segs);
    if !deleted.is_empty() {
        PersistStats::add(&stats.segments_deleted, deleted.len() as u64);
        tracing::info!(
            "journal retention: deleted {} committed segment(s): {}",
            deleted.len(),
            deleted.join(", ")
        );
    }
}

/// Drains the ring into the journal until the tap is dropped and the ring is empty.
///
/// A failed write (a full disk) never stops the thread and never blocks the tap: the
/// frames go on being drained and are counted as not kept, per venue, while the thread
/// retries every second; once a write succeeds again, journaling resumes at the last
/// flushed record. Segments of a live stream rotate by size and age, and sealed
/// segments every reader finished are deleted after the retention time.
pub(crate) fn journal_thread(
    mut rx: rtrb::Consumer<u8>,
    w: CaptureWriter,
    number: u64,
    rot: Rotation,
    shared: Arc<JournalShared>,
    stats: Arc<PersistStats>,
) -> Result<(), crate::PersistError> {
    let mut hdr = [0u8; HDR];
    let mut hdr_fill = 0usize;
    let mut payload: Vec<u8> = Vec::with_capacity(1 << 16);
    let mut payload_fill = 0usize;
    let mut in_payload = false;
    let mut idle = 0u32;
    let mut jw = JournalWriter {
        published: w.offset(),
        path: w.path().to_path_buf(),
        w: Some(w),
        number,
        started: Instant::now(),
        pending: [0; Venue::ALL.len()],
        unflushed: 0,
        failed: None,
        shared: shared.clone(),
        stats: stats.clone(),
        rot,
        last_janitor: Instant::now(),
    };
    jw.janitor(true);
    loop {
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
                jw.append(&rec);
                if jw.unflushed >= 256 << 10
                    || (jw.rot.rotate && jw.published + jw.unflushed as u64 >= jw.rot.max_bytes)
                {
                    jw.publish();
                }
            }
        }
        if jw.w.is_none() {
            jw.try_resume();
        }
        if progressed {
            idle = 0;
            continue;
        }
        if jw.unflushed > 0 {
            jw.publish();
        }
        jw.janitor(false);
        if rx.is_abandoned() && rx.is_empty() {
            // The tap is gone and everything it pushed was popped.
            break;
        }
        idle += 1;
        if idle < 64 {
            std::hint::spin_loop();
        } else if idle < 128 {
            std::thread::yield_now();
        } else {
            std::thread::sleep(Duration::from_micros(50 << (idle - 128).min(4)));
        }
    }
    jw.publish();
    if let Some(w) = jw.w.as_mut() {
        if let Err(e) = w.sync() {
            jw.fail(&e.to_string());
        }
    }
    // Release: pairs with the readers' Acquire load of `done`; `end` is final.
    shared.done.store(true, Ordering::Release);
    Ok(())
}
