//! The rtrb SPSC ring between the ingest thread and the book thread: its ingest side as
//! an [`EventSink`], its full-ring policy and its counters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_utils::CachePadded;
use hermes_book::{Event, EventSink};

use crate::idle::Idle;

/// What to do when the ring is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingFullPolicy {
    /// Wait for room (counted): nothing is lost; the producer slows down.
    Block,
    /// Drop the newest event (counted). Books then miss updates; only for feeds where
    /// freshness beats completeness.
    DropNewest,
}

/// Counters of the ring between ingest and book threads, shared with observers. Each
/// sits on its own cache line: the ingest thread writes them while the HTTP thread reads.
#[derive(Debug, Default)]
pub struct RingStats {
    /// Events pushed (stored every 64 pushes and at the end).
    pub pushed: CachePadded<AtomicU64>,
    /// Times the producer found the ring full.
    pub full_waits: CachePadded<AtomicU64>,
    /// Events dropped (only with [`RingFullPolicy::DropNewest`]).
    pub dropped: CachePadded<AtomicU64>,
}

/// The ingest side of the ring, an [`EventSink`].
pub struct RingSink {
    pub(crate) tx: rtrb::Producer<Event>,
    pub(crate) policy: RingFullPolicy,
    pub(crate) idle: Idle,
    pub(crate) stats: Arc<RingStats>,
    pub(crate) pushed: u64,
}

impl EventSink for RingSink {
    #[inline]
    fn push(&mut self, ev: Event) {
        let mut ev = ev;
        loop {
            match self.tx.push(ev) {
                Ok(()) => {
                    self.idle.reset();
                    self.pushed += 1;
                    if self.pushed & 63 == 0 {
                        // Relaxed: a statistic read by observers, not a synchronisation.
                        self.stats.pushed.store(self.pushed, Ordering::Relaxed);
                    }
                    return;
                }
                Err(rtrb::PushError::Full(back)) => {
                    // Relaxed: statistics only.
                    self.stats.full_waits.fetch_add(1, Ordering::Relaxed);
                    if self.policy == RingFullPolicy::DropNewest {
                        self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    ev = back;
                    self.idle.wait();
                }
            }
        }
    }
}

impl Drop for RingSink {
    fn drop(&mut self) {
        // Relaxed: the final count; the join of the thread orders it for the reader.
        self.stats.pushed.store(self.pushed, Ordering::Relaxed);
    }
}
