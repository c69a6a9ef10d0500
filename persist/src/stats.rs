//! [`PersistStats`]: the persister's counters and health, shared with observers (metrics,
//! readiness, the CLI summary).
//!
//! Every counter is a relaxed atomic: each is a statistic that one thread writes and
//! others only display; none orders any other memory.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use hermes_book::event::Venue;

/// Where `venue` is in [`Venue::ALL`], hence in [`PersistStats::frames_not_kept`].
pub(crate) fn venue_slot(venue: Venue) -> usize {
    Venue::ALL.iter().position(|v| *v == venue).unwrap_or(0)
}

/// The tables rows go to, in [`PersistStats::rows`] order.
pub const TABLES: [&str; 6] = [
    "raw_events",
    "trades",
    "book_snapshots",
    "top_of_book",
    "funding",
    "liquidations",
];

/// Counters and health of one persister.
#[derive(Debug)]
pub struct PersistStats {
    /// Frames the tap took from the ingest thread.
    pub frames_in: AtomicU64,
    /// Times the tap found the persister's ring full and waited (it never drops).
    pub ring_full_waits: AtomicU64,
    /// Records appended to the journal by this process.
    pub journal_records: AtomicU64,
    /// Size of the journal segment this run appends to, bytes (header included).
    pub journal_bytes: AtomicU64,
    /// Bytes of every segment in the journal directory (what retention keeps).
    pub journal_dir_bytes: AtomicU64,
    /// Segments in the journal directory.
    pub journal_segments: AtomicU64,
    /// Committed segments deleted by retention.
    pub segments_deleted: AtomicU64,
    /// Frames that reached the persister but could not be journaled (a full disk, an I/O
    /// error, an oversized frame), per venue in [`hermes_book::event::Venue::ALL`]
    /// order: they are in shm but never reach PostgreSQL.
    pub frames_not_kept: [AtomicU64; Venue::ALL.len()],
    /// Journal writes are failing now (frames are being counted as not kept); cleared
    /// once a write succeeds again.
    pub journal_failing: AtomicBool,
    /// Rows inserted per table ([`TABLES`] order); rows already present (a replay of the
    /// same data) are not counted here but in [`PersistStats::duplicate_rows`].
    pub rows: [AtomicU64; TABLES.len()],
    /// Rows the database already had (idempotent re-writes after a crash or a re-replay).
    pub duplicate_rows: AtomicU64,
    /// Batches committed.
    pub batches: AtomicU64,
    /// Last batch's COPY + insert + commit time, µs.
    pub copy_latency_us_last: AtomicU64,
    /// Slowest batch so far, µs.
    pub copy_latency_us_max: AtomicU64,
    /// Journal bytes not yet committed to PostgreSQL.
    pub lag_bytes: AtomicU64,
    /// Milliseconds since PostgreSQL last held everything journaled (0 when caught up).
    pub lag_ms: AtomicU64,
    /// Failed connection or batch attempts that were retried.
    pub retries: AtomicU64,
    /// Torn journal tails cut at start.
    pub torn_tails: AtomicU64,
    /// Damaged journal regions skipped (at start and while reading).
    pub damaged_regions: AtomicU64,
    /// Bytes in those regions.
    pub damaged_bytes: AtomicU64,
    /// Connected to PostgreSQL with the schema in place.
    pub connected: AtomicBool,
    /// Stopped writing because of a row the database refuses (see `last_error`); the
    /// journal still grows.
    pub halted: AtomicBool,
    /// The last error, for health endpoints and logs.
    pub last_error: Mutex<Option<String>>,
    /// Batch write times (COPY + insert + commit), µs: one sample per batch.
    pub batch_latency_us: Mutex<hdrhistogram::Histogram<u64>>,
}

impl Default for PersistStats {
    fn default() -> Self {
        PersistStats {
            frames_in: AtomicU64::new(0),
            ring_full_waits: AtomicU64::new(0),
            journal_records: AtomicU64::new(0),
            journal_bytes: AtomicU64::new(0),
            journal_dir_bytes: AtomicU64::new(0),
            journal_segments: AtomicU64::new(0),
            segments_deleted: AtomicU64::new(0),
            frames_not_kept: Default::default(),
            journal_failing: AtomicBool::new(false),
            rows: Default::default(),
            duplicate_rows: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            copy_latency_us_last: AtomicU64::new(0),
            copy_latency_us_max: AtomicU64::new(0),
            lag_bytes: AtomicU64::new(0),
            lag_ms: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            torn_tails: AtomicU64::new(0),
            damaged_regions: AtomicU64::new(0),
            damaged_bytes: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            halted: AtomicBool::new(false),
            last_error: Mutex::new(None),
            // 1 µs to 1 hour at 3 significant digits: a fixed, small allocation.
            batch_latency_us: Mutex::new(
                hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000, 3)
                    .expect("static bounds are valid"),
            ),
        }
    }
}

impl PersistStats {
    /// Rows inserted into `table` (one of [`TABLES`]).
    pub fn rows_of(&self, table: usize) -> u64 {
        self.rows[table].load(Relaxed)
    }

    /// Ready: connected, not halted, journaling, and less than `max_lag_ms` behind.
    pub fn ready(&self, max_lag_ms: u64) -> bool {
        self.connected.load(Relaxed)
            && !self.halted.load(Relaxed)
            && !self.journal_failing.load(Relaxed)
            && self.lag_ms.load(Relaxed) < max_lag_ms
    }

    /// Frames not journaled, in all.
    pub fn not_kept(&self) -> u64 {
        self.frames_not_kept.iter().map(|c| c.load(Relaxed)).sum()
    }

    /// Frames not journaled per venue, for messages: `coinbase 12, binance 3`.
    pub fn not_kept_by_venue(&self) -> String {
        Venue::ALL
            .iter()
            .zip(&self.frames_not_kept)
            .filter_map(|(v, c)| {
                let n = c.load(Relaxed);
                (n > 0).then(|| format!("{} {n}", v.name()))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub(crate) fn count_not_kept(&self, venue: Venue, n: u64) {
        self.frames_not_kept[venue_slot(venue)].fetch_add(n, Relaxed);
    }

    /// The last error message, if any.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    pub(crate) fn set_error(&self, msg: String) {
        if let Ok(mut e) = self.last_error.lock() {
            *e = Some(msg);
        }
    }

    pub(crate) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Relaxed);
    }

    pub(crate) fn set(c: &AtomicU64, n: u64) {
        c.store(n, Relaxed);
    }

    /// Batch write time percentiles in µs: (p50, p99, p99.9, max), zeros before the
    /// first batch.
    pub fn batch_latency_percentiles(&self) -> (u64, u64, u64, u64) {
        match self.batch_latency_us.lock() {
            Ok(h) if !h.is_empty() => (
                h.value_at_quantile(0.5),
                h.value_at_quantile(0.99),
                h.value_at_quantile(0.999),
                h.max(),
            ),
            _ => (0, 0, 0, 0),
        }
    }

    pub(crate) fn record_batch_latency(&self, us: u64) {
        if let Ok(mut h) = self.batch_latency_us.lock() {
            h.saturating_record(us.max(1));
        }
    }

    /// One line for logs and the CLI: rows per table, batches, lag.
    pub fn summary(&self) -> String {
        let (p50, p99, _, max) = self.batch_latency_percentiles();
        format!(
            "rows: raw_events {}, trades {}, book_snapshots {}, top_of_book {}, funding {}, liquidations {} ({} already present); {} batches, batch write p50 {} µs, p99 {} µs, max {} µs; lag {} bytes, {} ms; {} retries{}{}",
            self.rows_of(0),
            self.rows_of(1),
            self.rows_of(2),
            self.rows_of(3),
            self.rows_of(4),
            self.rows_of(5),
            self.duplicate_rows.load(Relaxed),
            self.batches.load(Relaxed),
            p50,
            p99,
            max,
            self.lag_bytes.load(Relaxed),
            self.lag_ms.load(Relaxed),
            self.retries.load(Relaxed),
            if self.halted.load(Relaxed) { "; HALTED" } else { "" },
            match self.not_kept() {
                0 => String::new(),
                n => format!("; {n} FRAMES NOT JOURNALED ({})", self.not_kept_by_venue()),
            },
        )
    }
}
