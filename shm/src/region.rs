//! The mapped file: creating it (writer) and opening it (readers).

use std::fs::OpenOptions;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use memmap2::{Mmap, MmapMut};

use crate::layout::{
    self, dir, header, slot, DEPTH, DIR_ENTRY_SIZE, MAX_SYMBOL_LEN, SLOT_SIZE, SLOT_WORDS,
};
use hermes_book::clock::unix_ns;

use crate::path_checks::{
    check_directory, create_temp, existing, file_kind, process_exists, Existing,
};
use crate::{seqlock, Bbo, Instrument, ShmError, SlotIndex, TopOfBook, Venue};

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ShmError + '_ {
    move |source| ShmError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Typed views of a mapping's words.
///
/// # Safety
/// `base` must point to a live mapping of at least `len` bytes, aligned to 8 bytes, that
/// stays mapped while the returned references live, and whose bytes are accessed by
/// other threads and processes only through atomics.
unsafe fn atomic_u64<'a>(base: *const u8, len: usize, off: usize) -> &'a AtomicU64 {
    assert!(
        off % 8 == 0 && off + 8 <= len,
        "offset {off} outside the region"
    );
    // SAFETY: in bounds and 8-aligned (asserted; the mapping is page-aligned); AtomicU64
    // has the layout of u64; the caller keeps the mapping alive and all shared access
    // goes through atomics, so there is no data race.
    unsafe { &*(base.add(off) as *const AtomicU64) }
}

/// # Safety
/// As [`atomic_u64`], with 4-byte alignment.
unsafe fn atomic_u32<'a>(base: *const u8, len: usize, off: usize) -> &'a AtomicU32 {
    assert!(
        off % 4 == 0 && off + 4 <= len,
        "offset {off} outside the region"
    );
    // SAFETY: as in `atomic_u64`, for a 4-byte aligned u32.
    unsafe { &*(base.add(off) as *const AtomicU32) }
}

/// # Safety
/// As [`atomic_u64`], for `SLOT_WORDS` words at `off`.
unsafe fn slot_words<'a>(base: *const u8, len: usize, off: usize) -> &'a [AtomicU64] {
    assert!(
        off % 64 == 0 && off + SLOT_SIZE <= len,
        "slot at {off} outside the region"
    );
    // SAFETY: in bounds, cache-line aligned; see `atomic_u64`.
    unsafe { std::slice::from_raw_parts(base.add(off) as *const AtomicU64, SLOT_WORDS) }
}

/// Retries of [`ShmReader::read`] before it gives up on a slot whose writer never leaves
/// it: a writer is inside a slot for well under a microsecond, and after 64 spins every
/// retry yields, so this is on the order of a second of a dead writer.
const READ_ATTEMPTS: u32 = 1_000_000;

/// The most slots a region may have (a 64 Ki-slot file is about 70 MB).
pub const MAX_SLOTS: u32 = 1 << 16;

/// How to create a region.
#[derive(Clone, Debug)]
pub struct WriterOptions {
    /// Number of instrument slots (and directory entries), 1 to [`MAX_SLOTS`].
    pub slots: u32,
    /// Mode 0640 instead of 0600, so a reader in the file's group can map it.
    pub group_readable: bool,
    /// Replace a file at the path that is not a Hermes shm file (by default that is
    /// refused: the path may be wrong).
    pub replace_foreign: bool,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            slots: 256,
            group_readable: false,
            replace_foreign: false,
        }
    }
}

/// How to open a region for reading.
#[derive(Clone, Debug, Default)]
pub struct ReaderOptions {
    /// Map a file owned by another user. By default that is refused: in a shared
    /// directory such as `/dev/shm` anyone can create a file at a guessable path and feed
    /// a reader made-up prices. A group-readable region (`--shm-group`) read by the
    /// group's other users needs this.
    pub allow_other_owner: bool,
}

/// The single writer of a region. Creates the file (atomically replacing an older one),
/// registers instruments and publishes slots. Not `Sync`: one thread owns it.
pub struct ShmWriter {
    map: MmapMut,
    path: PathBuf,
    slot_count: u32,
    instruments: u32,
    words: [u64; SLOT_WORDS - 1],
}

impl ShmWriter {
    /// Creates the region at `path` with mode 0600 (0640 with `group_readable`), replacing
    /// any file there with a rename, so readers of the old file keep a consistent (now
    /// dead) mapping and notice the restart through [`ShmReader::writer_status`]. The
    /// generation is one more than the old file's.
    pub fn create(path: &Path, opts: WriterOptions) -> Result<ShmWriter, ShmError> {
        let p = || path.display().to_string();
        if opts.slots == 0 || opts.slots > MAX_SLOTS {
            return Err(ShmError::SlotCount {
                slots: opts.slots,
                max: MAX_SLOTS,
            });
        }
        let slots = opts.slots;
        check_directory(path)?;
        let old_generation = match existing(path)? {
            Existing::None => 0,
            Existing::Hermes {
                live_pid: Some(pid),
                ..
            } => return Err(ShmError::Held { path: p(), pid }),
            Existing::Hermes { generation, .. } => generation,
            Existing::Foreign if opts.replace_foreign => 0,
            Existing::Foreign => return Err(ShmError::Foreign { path: p() }),
        };
        let mode = if opts.group_readable { 0o640 } else { 0o600 };
        let (tmp, file) = create_temp(path, mode)?;
        // The umask may have cleared bits we asked for; set the mode explicitly.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(io_err(&tmp))?;
        let size = layout::file_size(slots as usize);
        file.set_len(size as u64).map_err(io_err(&tmp))?;
        // SAFETY: the file was just created under a private temporary name; no other
        // process knows it yet, and we never truncate it while mapped.
        let mut map = unsafe { MmapMut::map_mut(&file) }.map_err(io_err(&tmp))?;
        {
            let b = &mut map[..];
            b[header::MAGIC..header::MAGIC + 8].copy_from_slice(&layout::MAGIC);
            put_u32(b, header::VERSION, layout::VERSION);
            put_u32(b, header::HEADER_SIZE, layout::HEADER_SIZE as u32);
            put_u32(b, header::SLOT_SIZE, SLOT_SIZE as u32);
            put_u32(b, header::SLOT_COUNT, slots);
            put_u64(b, header::DIR_OFFSET, layout::dir_offset() as u64);
            put_u64(
                b,
                header::SLOTS_OFFSET,
                layout::slots_offset(slots as usize) as u64,
            );
            put_u32(b, header::WRITER_PID, std::process::id());
            // A crafted old header may claim u64::MAX: wrap (to 1, never 0).
            put_u64(b, header::GENERATION, old_generation.wrapping_add(1).max(1));
            put_u64(b, header::HEARTBEAT_NS, unix_ns() as u64);
            put_u32(b, header::DEPTH, DEPTH as u32);
            put_u64(b, header::CREATED_NS, unix_ns() as u64);
        }
        map.flush().map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io_err(path)(e)
        })?;
        Ok(ShmWriter {
            map,
            path: path.to_path_buf(),
            slot_count: slots,
            instruments: 0,
            words: [0; SLOT_WORDS - 1],
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// This writer's generation.
    pub fn generation(&self) -> u64 {
        get_u64(&self.map, header::GENERATION)
    }

    /// Registers an instrument and returns its slot. The entry becomes visible to readers
    /// atomically (the count is published after the entry is written).
    pub fn add_instrument(
        &mut self,
        venue: Venue,
        symbol: &str,
        price_decimals: u8,
        size_decimals: u8,
    ) -> Result<SlotIndex, ShmError> {
        let bad = |why| ShmError::BadInstrument {
            venue: venue.name(),
            symbol: symbol.to_string(),
            why,
        };
        if symbol.is_empty() {
            return Err(bad("empty symbol"));
        }
        if self.has_instrument(venue, symbol) {
            return Err(bad("already in the directory"));
        }
        if symbol.len() > MAX_SYMBOL_LEN {
            return Err(ShmError::SymbolTooLong {
                symbol: symbol.to_string(),
                max: MAX_SYMBOL_LEN,
            });
        }
        if self.instruments >= self.slot_count {
            return Err(ShmError::Full {
                slots: self.slot_count,
            });
        }
        let i = self.instruments;
        let off = layout::dir_offset() + i as usize * DIR_ENTRY_SIZE;
        {
            // Entry `i` is beyond the published count, so no reader looks at it yet.
            let e = &mut self.map[off..off + DIR_ENTRY_SIZE];
            e.fill(0);
            e[dir::VENUE] = venue as u8;
            e[dir::PRICE_DECIMALS] = price_decimals;
            e[dir::SIZE_DECIMALS] = size_decimals;
            e[dir::SYMBOL_LEN] = symbol.len() as u8;
            e[dir::SLOT_INDEX..dir::SLOT_INDEX + 4].copy_from_slice(&i.to_le_bytes());
            e[dir::SYMBOL..dir::SYMBOL + symbol.len()].copy_from_slice(symbol.as_bytes());
        }
        self.instruments += 1;
        // Release: pairs with the reader's acquire load of the count, making the entry
        // bytes written above visible before the reader reads them.
        self.header_u32(header::INSTRUMENT_COUNT)
            .store(self.instruments, Ordering::Release);
        Ok(SlotIndex(i))
    }

    /// `true` when `venue`/`symbol` already has an entry (a cold path: instruments are
    /// registered once).
    fn has_instrument(&self, venue: Venue, symbol: &str) -> bool {
        (0..self.instruments as usize).any(|i| {
            let off = layout::dir_offset() + i * DIR_ENTRY_SIZE;
            let e = &self.map[off..off + DIR_ENTRY_SIZE];
            let len = e[dir::SYMBOL_LEN] as usize;
            e[dir::VENUE] == venue as u8 && &e[dir::SYMBOL..dir::SYMBOL + len] == symbol.as_bytes()
        })
    }

    /// Publishes `tob` into `slot` under its seqlock. `tob.seq` is ignored.
    #[inline]
    pub fn publish(&mut self, slot: SlotIndex, tob: &TopOfBook) {
        assert!(slot.0 < self.instruments, "slot {} not registered", slot.0);
        tob.encode(&mut self.words);
        let base = self.map.as_ptr();
        let len = self.map.len();
        let off = layout::slots_offset(self.slot_count as usize) + slot.0 as usize * SLOT_SIZE;
        // SAFETY: the mapping lives as long as `self`; the offset is a registered slot;
        // shared bytes are only accessed through atomics.
        let words = unsafe { slot_words(base, len, off) };
        // Only the data words: the reserved tail of the slot stays zero.
        seqlock::write(
            &words[0],
            &words[1..slot::DATA_END],
            &self.words[..slot::DATA_END - 1],
        );
    }

    /// Refreshes the heartbeat; call at least every 100 ms.
    pub fn heartbeat(&self) {
        // Relaxed: a standalone timestamp; readers only compare it with their clock.
        self.header_u64(header::HEARTBEAT_NS)
            .store(unix_ns() as u64, Ordering::Relaxed);
    }

    fn header_u64(&self, off: usize) -> &AtomicU64 {
        // SAFETY: the mapping lives as long as `self`; header offsets are in bounds.
        unsafe { atomic_u64(self.map.as_ptr(), self.map.len(), off) }
    }

    fn header_u32(&self, off: usize) -> &AtomicU32 {
        // SAFETY: as in `header_u64`.
        unsafe { atomic_u32(self.map.as_ptr(), self.map.len(), off) }
    }
}

impl Drop for ShmWriter {
    fn drop(&mut self) {
        // Release: a reader that sees the flag also sees the last publications.
        self.header_u32(header::FLAGS)
            .fetch_or(layout::FLAG_CLOSED, Ordering::Release);
    }
}

fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}
fn put_u64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}
pub(crate) fn get_u32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}
pub(crate) fn get_u64(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}

/// What a reader can tell about the writer of its file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriterStatus {
    /// The heartbeat is fresh.
    Alive {
        /// Age of the last heartbeat.
        heartbeat_age: Duration,
    },
    /// The writer exited cleanly; the data is its last state.
    Closed,
    /// The writer's process is gone without closing (crashed or killed).
    Dead {
        /// Its pid.
        pid: u32,
    },
    /// The process exists but the heartbeat is old (stuck, or a pid reused).
    Stalled {
        /// Age of the last heartbeat.
        heartbeat_age: Duration,
    },
    /// A new writer has replaced the file at this path: reopen it.
    Replaced,
}

/// The state in words for people: `DEAD`, `STALLED` and `REPLACED` in capitals (they need
/// attention). `hermes shm dump`, `hermes top` and the HTTP face all print this.
impl std::fmt::Display for WriterStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriterStatus::Alive { heartbeat_age } => {
                write!(f, "alive (heartbeat {} ms ago)", heartbeat_age.as_millis())
            }
            WriterStatus::Closed => {
                f.write_str("closed (the writer exited cleanly; data is its final state)")
            }
            WriterStatus::Dead { pid } => {
                write!(
                    f,
                    "DEAD (pid {pid} is gone without closing; data may be old)"
                )
            }
            WriterStatus::Stalled { heartbeat_age } => write!(
                f,
                "STALLED (no heartbeat for {:.1} s)",
                heartbeat_age.as_secs_f64()
            ),
            WriterStatus::Replaced => {
                f.write_str("REPLACED (a newer writer recreated the file at this path)")
            }
        }
    }
}

/// A read-only mapping of a region, for any process. Cheap to clone readers by opening
/// again; reading never blocks the writer.
pub struct ShmReader {
    map: Mmap,
    path: PathBuf,
    inode: u64,
    slot_count: u32,
    slots_offset: usize,
}

impl ShmReader {
    /// Maps the region at `path` read-only and checks its magic, version and size.
    ///
    /// # Safety
    /// The file is shared with a writer in another process. If anyone truncates it while
    /// it is mapped, touching the lost pages raises `SIGBUS`, which Rust cannot turn into
    /// an error. Hermes writers never truncate a published file (a restart renames a new
    /// file into place), so the caller must only ensure nothing else does.
    pub unsafe fn open(path: &Path) -> Result<ShmReader, ShmError> {
        // SAFETY: the caller upholds this function's contract.
        unsafe { ShmReader::open_with(path, &ReaderOptions::default()) }
    }

    /// [`ShmReader::open`] with options: a file owned by another user is refused unless
    /// `opts.allow_other_owner`.
    ///
    /// # Safety
    /// As [`ShmReader::open`].
    pub unsafe fn open_with(path: &Path, opts: &ReaderOptions) -> Result<ShmReader, ShmError> {
        let p = path.display().to_string();
        // O_NONBLOCK: a FIFO at the path must not hang the reader in open.
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(io_err(path))?;
        let meta = file.metadata().map_err(io_err(path))?;
        if !meta.file_type().is_file() {
            return Err(ShmError::NotRegular {
                path: p,
                kind: file_kind(&meta),
            });
        }
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if meta.uid() != me && !opts.allow_other_owner {
            return Err(ShmError::OtherOwner {
                path: p,
                owner: meta.uid(),
            });
        }
        let len = meta.len();
        if len < layout::HEADER_SIZE as u64 {
            return Err(ShmError::Truncated {
                path: p,
                len,
                need: layout::HEADER_SIZE as u64,
            });
        }
        // SAFETY: the caller guarantees the file is not truncated while mapped; every
        // shared byte we read concurrently with the writer is read through atomics.
        let map = unsafe { Mmap::map(&file) }.map_err(io_err(path))?;
        if map[..8] != layout::MAGIC {
            return Err(ShmError::BadMagic { path: p });
        }
        let version = get_u32(&map, header::VERSION);
        if version != layout::VERSION {
            return Err(ShmError::Version {
                path: p,
                found: version,
                expected: layout::VERSION,
            });
        }
        let slot_count = get_u32(&map, header::SLOT_COUNT);
        let slots_offset = get_u64(&map, header::SLOTS_OFFSET) as usize;
        let need = layout::file_size(slot_count as usize) as u64;
        let layout_ok = slots_offset == layout::slots_offset(slot_count as usize)
            && get_u32(&map, header::SLOT_SIZE) as usize == SLOT_SIZE
            && get_u32(&map, header::HEADER_SIZE) as usize == layout::HEADER_SIZE
            && get_u64(&map, header::DIR_OFFSET) as usize == layout::dir_offset()
            && get_u32(&map, header::DEPTH) as usize == DEPTH;
        if !layout_ok {
            return Err(ShmError::Layout { path: p });
        }
        if len < need {
            return Err(ShmError::Truncated { path: p, len, need });
        }
        Ok(ShmReader {
            map,
            path: path.to_path_buf(),
            inode: meta.ino(),
            slot_count,
            slots_offset,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of slots in the file.
    pub fn slot_count(&self) -> u32 {
        self.slot_count
    }

    /// The writer's pid.
    pub fn writer_pid(&self) -> u32 {
        // Relaxed: informational, written once before the file was published.
        self.u32_at(header::WRITER_PID).load(Ordering::Relaxed)
    }

    /// The writer generation of this file.
    pub fn generation(&self) -> u64 {
        // Relaxed: written once before the file was renamed into place.
        self.u64_at(header::GENERATION).load(Ordering::Relaxed)
    }

    /// The last heartbeat, Unix ns.
    pub fn heartbeat_ns(&self) -> i64 {
        // Relaxed: a standalone timestamp (see `ShmWriter::heartbeat`).
        self.u64_at(header::HEARTBEAT_NS).load(Ordering::Relaxed) as i64
    }

    /// `true` when the path now names another file (a new writer renamed its file into
    /// place): this mapping will never change again; open the path anew.
    pub fn is_replaced(&self) -> bool {
        std::fs::metadata(&self.path).is_ok_and(|meta| meta.ino() != self.inode)
    }

    /// Whether the writer is alive, stalled (heartbeat older than `max_age`), closed,
    /// dead, or replaced by a newer file at the same path.
    pub fn writer_status(&self, max_age: Duration) -> WriterStatus {
        if self.is_replaced() {
            return WriterStatus::Replaced;
        }
        // Acquire: pairs with the writer's release `fetch_or` on drop.
        if self.u32_at(header::FLAGS).load(Ordering::Acquire) & layout::FLAG_CLOSED != 0 {
            return WriterStatus::Closed;
        }
        let pid = self.writer_pid();
        if !process_exists(pid) {
            return WriterStatus::Dead { pid };
        }
        // Saturating: a forged heartbeat (i64::MIN) must not overflow the subtraction.
        let age_ns = unix_ns().saturating_sub(self.heartbeat_ns()).max(0) as u64;
        let heartbeat_age = Duration::from_nanos(age_ns);
        if heartbeat_age > max_age {
            WriterStatus::Stalled { heartbeat_age }
        } else {
            WriterStatus::Alive { heartbeat_age }
        }
    }

    /// The published instruments, in slot order.
    pub fn instruments(&self) -> Vec<Instrument> {
        // Acquire: pairs with the writer's release store after it wrote the entries.
        let n = self
            .u32_at(header::INSTRUMENT_COUNT)
            .load(Ordering::Acquire)
            .min(self.slot_count);
        (0..n as usize)
            .filter_map(|i| {
                let off = layout::dir_offset() + i * DIR_ENTRY_SIZE;
                let e = &self.map[off..off + DIR_ENTRY_SIZE];
                let venue = Venue::from_code(e[dir::VENUE])?;
                let len = (e[dir::SYMBOL_LEN] as usize).min(MAX_SYMBOL_LEN);
                let symbol =
                    String::from_utf8_lossy(&e[dir::SYMBOL..dir::SYMBOL + len]).into_owned();
                let slot = get_u32(e, dir::SLOT_INDEX);
                (slot < self.slot_count).then_some(Instrument {
                    venue,
                    symbol,
                    price_decimals: e[dir::PRICE_DECIMALS],
                    size_decimals: e[dir::SIZE_DECIMALS],
                    slot: SlotIndex(slot),
                })
            })
            .collect()
    }

    /// Finds an instrument by venue and symbol.
    pub fn find(&self, venue: Venue, symbol: &str) -> Option<Instrument> {
        self.instruments()
            .into_iter()
            .find(|i| i.venue == venue && i.symbol == symbol)
    }

    fn words(&self, slot: SlotIndex) -> &[AtomicU64] {
        assert!(slot.0 < self.slot_count, "slot {} out of range", slot.0);
        let off = self.slots_offset + slot.0 as usize * SLOT_SIZE;
        // SAFETY: the mapping lives as long as `self`; the slot is in bounds (checked
        // at open against the file length); shared bytes are read only through atomics.
        unsafe { slot_words(self.map.as_ptr(), self.map.len(), off) }
    }

    /// The hot fields only (best bid/ask, flags, times: words 1-11), under the same
    /// seqlock: the fast read for a strategy polling the touch. `None` when the writer
    /// stayed inside the slot (see [`ShmReader::read`]).
    #[inline]
    pub fn read_bbo(&self, slot: SlotIndex) -> Option<Bbo> {
        let w = self.words(slot);
        let mut b = [0u64; slot::ASK_QTY];
        seqlock::read(&w[0], &w[1..=slot::ASK_QTY], &mut b, READ_ATTEMPTS).map(|seq| Bbo {
            seq,
            update_id: b[slot::UPDATE_ID - 1],
            exch_ts_ns: b[slot::EXCH_TS_NS - 1] as i64,
            recv_ts_ns: b[slot::RECV_TS_NS - 1] as i64,
            publish_ts_ns: b[slot::PUBLISH_TS_NS - 1] as i64,
            updates: b[slot::UPDATES - 1],
            flags: b[slot::FLAGS - 1],
            bid_px: b[slot::BID_PX - 1] as i64,
            bid_qty: b[slot::BID_QTY - 1] as i64,
            ask_px: b[slot::ASK_PX - 1] as i64,
            ask_qty: b[slot::ASK_QTY - 1] as i64,
        })
    }

    /// One attempt at a consistent copy; `None` if the writer was mid-update.
    pub fn try_read(&self, slot: SlotIndex) -> Option<TopOfBook> {
        let w = self.words(slot);
        let mut buf = [0u64; SLOT_WORDS - 1];
        seqlock::try_read(&w[0], &w[1..slot::DATA_END], &mut buf[..slot::DATA_END - 1])
            .map(|s| TopOfBook::decode(s, &buf))
    }

    /// A consistent copy of the slot, retrying while the writer is inside it. `None` when
    /// the writer stayed inside the slot for about a second of retries: it died or
    /// stopped mid-update (see [`ShmReader::writer_status`]).
    pub fn read(&self, slot: SlotIndex) -> Option<TopOfBook> {
        let w = self.words(slot);
        let mut buf = [0u64; SLOT_WORDS - 1];
        seqlock::read(
            &w[0],
            &w[1..slot::DATA_END],
            &mut buf[..slot::DATA_END - 1],
            READ_ATTEMPTS,
        )
        .map(|s| TopOfBook::decode(s, &buf))
    }

    /// The slot's current sequence (odd while being written).
    pub fn seq(&self, slot: SlotIndex) -> u64 {
        // Acquire: a following `read` sees at least this publication.
        self.words(slot)[0].load(Ordering::Acquire)
    }

    /// Waits until the slot's sequence differs from `seq` (spinning briefly, then
    /// yielding), and returns the new copy; `None` after `timeout`.
    pub fn wait_for_change(
        &self,
        slot: SlotIndex,
        seq: u64,
        timeout: Duration,
    ) -> Option<TopOfBook> {
        let start = std::time::Instant::now();
        let mut spins = 0u32;
        loop {
            let s = self.seq(slot);
            if s != seq && s & 1 == 0 {
                if let Some(t) = self.try_read(slot) {
                    return Some(t);
                }
            }
            if start.elapsed() > timeout {
                return None;
            }
            spins += 1;
            if spins < 128 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }

    fn u64_at(&self, off: usize) -> &AtomicU64 {
        // SAFETY: the mapping lives as long as `self`; header offsets are in bounds.
        unsafe { atomic_u64(self.map.as_ptr(), self.map.len(), off) }
    }

    fn u32_at(&self, off: usize) -> &AtomicU32 {
        // SAFETY: as in `u64_at`.
        unsafe { atomic_u32(self.map.as_ptr(), self.map.len(), off) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("hermes-shm-{}-{}", name, std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d.join("region")
    }

    #[test]
    fn wait_for_change_returns_the_next_publication_or_times_out() {
        let path = tmp("wait");
        let mut w = ShmWriter::create(&path, WriterOptions::default()).unwrap();
        let slot = w.add_instrument(Venue::Binance, "BTCUSDT", 2, 4).unwrap();
        w.publish(slot, &TopOfBook::default());
        // SAFETY: test-owned file.
        let r = unsafe { ShmReader::open(&path) }.unwrap();
        let seq = r.seq(slot);
        // Nothing published: the wait ends empty-handed.
        assert!(r
            .wait_for_change(slot, seq, Duration::from_millis(5))
            .is_none());
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            tx.send(()).unwrap();
            r.wait_for_change(slot, seq, Duration::from_secs(30))
        });
        rx.recv().unwrap();
        let t = TopOfBook {
            bid_px: 4_200,
            update_id: 9,
            ..Default::default()
        };
        w.publish(slot, &t);
        let got = reader.join().unwrap().expect("the publication arrives");
        assert_eq!((got.bid_px, got.update_id), (4_200, 9));
        assert!(got.seq > seq && got.seq % 2 == 0);
        drop(w);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn create_publish_read_and_restart() {
        let path = tmp("basic");
        let mut w = ShmWriter::create(
            &path,
            WriterOptions {
                slots: 4,
                group_readable: false,
                replace_foreign: false,
            },
        )
        .unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let a = w.add_instrument(Venue::Coinbase, "BTC-USD", 8, 8).unwrap();
        let b = w.add_instrument(Venue::Binance, "ETHUSDT", 2, 4).unwrap();
        let mut t = TopOfBook {
            bid_px: 10,
            ask_px: 12,
            bid_levels: 1,
            ..Default::default()
        };
        t.bids[0] = (10, 3);
        w.publish(b, &t);
        w.heartbeat();
        // SAFETY: test-owned file.
        let r = unsafe { ShmReader::open(&path) }.unwrap();
        let inst = r.instruments();
        assert_eq!(inst.len(), 2);
        assert_eq!(inst[1].symbol, "ETHUSDT");
        assert_eq!((inst[1].price_decimals, inst[1].size_decimals), (2, 4));
        let got = r.read(b).unwrap();
        let bbo = r.read_bbo(b).unwrap();
        assert_eq!(
            (bbo.seq, bbo.bid_px, bbo.ask_px, bbo.flags, bbo.updates),
            (got.seq, got.bid_px, got.ask_px, got.flags, got.updates)
        );
        assert_eq!(got.seq, 2);
        assert_eq!(got.bid_levels(), &[(10, 3)]);
        assert_eq!(r.read(a).unwrap().seq, 0);
        assert!(matches!(
            r.writer_status(Duration::from_secs(5)),
            WriterStatus::Alive { .. }
        ));
        let g1 = r.generation();
        drop(w);
        assert_eq!(
            r.writer_status(Duration::from_secs(5)),
            WriterStatus::Closed
        );
        let w2 = ShmWriter::create(
            &path,
            WriterOptions {
                slots: 4,
                group_readable: true,
                replace_foreign: false,
            },
        )
        .unwrap();
        assert_eq!(
            r.writer_status(Duration::from_secs(5)),
            WriterStatus::Replaced
        );
        // SAFETY: test-owned file.
        let r2 = unsafe { ShmReader::open(&path) }.unwrap();
        assert_eq!(r2.generation(), g1 + 1);
        assert_eq!(w2.generation(), g1 + 1);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn bad_counts_and_names_are_clear_errors() {
        let path = tmp("bounds");
        for slots in [0, MAX_SLOTS + 1, u32::MAX] {
            let o = WriterOptions {
                slots,
                ..WriterOptions::default()
            };
            let e = ShmWriter::create(&path, o).err().unwrap();
            assert!(e.to_string().contains("--shm-slots"), "{e}");
        }
        let mut w = ShmWriter::create(&path, WriterOptions::default()).unwrap();
        let e = w.add_instrument(Venue::Coinbase, "", 8, 8).unwrap_err();
        assert!(e.to_string().contains("empty symbol"), "{e}");
        w.add_instrument(Venue::Coinbase, "BTC-USD", 8, 8).unwrap();
        let e = w
            .add_instrument(Venue::Coinbase, "BTC-USD", 8, 8)
            .unwrap_err();
        assert!(e.to_string().contains("already"), "{e}");
        // The same symbol on another venue is another instrument.
        w.add_instrument(Venue::Binance, "BTC-USD", 8, 8).unwrap();
        drop(w);
        // A crafted generation at the top wraps to 1 instead of overflowing.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[header::GENERATION..header::GENERATION + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        let w = ShmWriter::create(&path, WriterOptions::default()).unwrap();
        assert_eq!(w.generation(), 1);
        drop(w);
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn refuses_foreign_and_future_files() {
        let path = tmp("bad");
        std::fs::write(&path, vec![7u8; 8192]).unwrap();
        // SAFETY: test-owned file.
        let e = unsafe { ShmReader::open(&path) }.err().unwrap();
        assert!(e.to_string().contains("not a Hermes shm file"), "{e}");
        // A writer does not replace a foreign file unless told to.
        let e = ShmWriter::create(&path, WriterOptions::default())
            .err()
            .unwrap();
        assert!(matches!(e, ShmError::Foreign { .. }), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), vec![7u8; 8192]);
        let replace = WriterOptions {
            replace_foreign: true,
            ..WriterOptions::default()
        };
        drop(ShmWriter::create(&path, replace).unwrap());
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[header::VERSION] = 99;
        std::fs::write(&path, &bytes).unwrap();
        // SAFETY: test-owned file.
        let e = unsafe { ShmReader::open(&path) }.err().unwrap();
        assert!(e.to_string().contains("layout version 99"), "{e}");
        std::fs::write(&path, &bytes[..5000]).unwrap();
        bytes[header::VERSION] = layout::VERSION as u8;
        std::fs::write(&path, &bytes[..5000]).unwrap();
        // SAFETY: test-owned file.
        let e = unsafe { ShmReader::open(&path) }.err().unwrap();
        assert!(e.to_string().contains("needs"), "{e}");
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn full_region_and_long_symbols_are_errors() {
        let path = tmp("full");
        let mut w = ShmWriter::create(
            &path,
            WriterOptions {
                slots: 1,
                group_readable: false,
                replace_foreign: false,
            },
        )
        .unwrap();
        assert!(w
            .add_instrument(Venue::Binance, &"X".repeat(49), 8, 8)
            .is_err());
        w.add_instrument(Venue::Binance, "A", 8, 8).unwrap();
        let e = w.add_instrument(Venue::Binance, "B", 8, 8).unwrap_err();
        assert!(e.to_string().contains("all 1 slots"), "{e}");
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
    /// Found by the `shm` fuzz target: a header whose writer looks alive but whose
    /// heartbeat is `i64::MIN` made `writer_status` overflow ("attempt to subtract with
    /// overflow"), and a writer pid of 0 (or one past `i32::MAX`) was reported alive,
    /// since `kill(0, 0)` asks about the caller's own process group.
    #[test]
    fn forged_heartbeat_and_pid_are_no_live_writer() {
        use std::os::unix::fs::FileExt;
        let path = tmp("forged");
        let w = ShmWriter::create(
            &path,
            WriterOptions {
                slots: 1,
                group_readable: false,
                replace_foreign: false,
            },
        )
        .unwrap();
        // SAFETY: test-owned file, never truncated.
        let r = unsafe { ShmReader::open(&path) }.unwrap();
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.write_at(&i64::MIN.to_le_bytes(), header::HEARTBEAT_NS as u64)
            .unwrap();
        assert!(matches!(
            r.writer_status(Duration::from_secs(1)),
            WriterStatus::Stalled { .. }
        ));
        for pid in [0u32, 1 << 31, u32::MAX] {
            f.write_at(&pid.to_le_bytes(), header::WRITER_PID as u64)
                .unwrap();
            assert_eq!(
                r.writer_status(Duration::from_secs(1)),
                WriterStatus::Dead { pid }
            );
        }
        drop(w);
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
}
