//! Counters of a live run, shared with whoever reports them (`--stats`, the HTTP
//! metrics): atomics written by the ingest thread, read by anyone.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

use hermes_ingest::venue::LIVE_VENUES;
use hermes_ingest::{DecodeStats, Venue};

use crate::breaker::BreakerState;

/// Per-venue connection counters, shared with whoever reports them.
#[derive(Debug, Default)]
pub struct VenueStats {
    /// The venue is configured in this run (its connection loop runs).
    pub active: AtomicBool,
    /// Currently connected.
    pub connected: AtomicBool,
    /// Breaker state (`BreakerState as u8`).
    pub breaker: AtomicU8,
    /// Successful connections after the first.
    pub reconnects: AtomicU64,
    /// Failed connection attempts and abnormal ends.
    pub failures: AtomicU64,
    /// Coinbase resubscriptions / Binance REST snapshot fetches for a resync.
    pub resyncs_requested: AtomicU64,
    /// REST snapshots fetched.
    pub rest_fetches: AtomicU64,
    /// REST answers 429/418 honoured.
    pub rest_throttled: AtomicU64,
    /// Messages over the size limit.
    pub oversize: AtomicU64,
}

impl VenueStats {
    /// The breaker state.
    pub fn breaker(&self) -> BreakerState {
        // Relaxed: a reported state, no data depends on it.
        BreakerState::from_u8(self.breaker.load(Ordering::Relaxed))
    }
}

/// Counters of a live run.
#[derive(Debug, Default)]
pub struct LiveStats {
    /// Per venue, indexed by the venue code (`venue as usize`): see [`LiveStats::venue`].
    pub venues: [VenueStats; Venue::CODES],
    /// Frames received (both venues, REST snapshots included).
    pub frames: AtomicU64,
    /// Bytes received.
    pub bytes: AtomicU64,
    /// Frames refused as malformed.
    pub parse_errors: AtomicU64,
    /// Sequence gaps.
    pub gaps: AtomicU64,
    /// Books rebuilt after a gap.
    pub resyncs: AtomicU64,
    /// Unix ns of the last frame.
    pub last_frame_ns: AtomicU64,
}

impl LiveStats {
    /// Copies the decoder's counters, which only the ingest thread can read.
    pub(crate) fn publish(&self, d: &DecodeStats) {
        // Relaxed: counters for reports; nothing synchronises through them.
        self.frames.store(d.frames, Ordering::Relaxed);
        self.bytes.store(d.bytes, Ordering::Relaxed);
        self.parse_errors.store(d.parse_errors, Ordering::Relaxed);
        self.gaps.store(d.gaps, Ordering::Relaxed);
        self.resyncs.store(d.resyncs, Ordering::Relaxed);
    }

    /// One line of counters for `--stats`.
    pub fn line(&self) -> String {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let v = |s: &VenueStats| {
            format!(
                "{} breaker {} reconnects {} failures {} resync-requests {} rest {} throttled {} oversize {}",
                if s.connected.load(Ordering::Relaxed) { "up" } else { "down" },
                s.breaker().name(),
                r(&s.reconnects),
                r(&s.failures),
                r(&s.resyncs_requested),
                r(&s.rest_fetches),
                r(&s.rest_throttled),
                r(&s.oversize)
            )
        };
        let mut line = format!(
            "frames {} bytes {} parse-errors {} gaps {} resyncs {}",
            r(&self.frames),
            r(&self.bytes),
            r(&self.parse_errors),
            r(&self.gaps),
            r(&self.resyncs),
        );
        for venue in LIVE_VENUES {
            let s = self.venue(venue);
            if s.active.load(Ordering::Relaxed) {
                line.push_str(&format!(" | {venue} {}", v(s)));
            }
        }
        line
    }

    /// The counters of `venue`'s connection.
    pub fn venue(&self, venue: Venue) -> &VenueStats {
        &self.venues[venue as usize]
    }

    /// The venues whose connection runs (configured in this run), with their counters.
    pub fn active(&self) -> impl Iterator<Item = (Venue, &VenueStats)> {
        LIVE_VENUES
            .into_iter()
            .map(|v| (v, self.venue(v)))
            // Relaxed: set once before the connection starts; a report may miss it.
            .filter(|(_, s)| s.active.load(Ordering::Relaxed))
    }
}
