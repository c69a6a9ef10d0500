//! Webhook ticks: what the HTTP side hands the ingest thread ([`TickRequest`]), what it
//! answers ([`TickOutcome`]), the event ids remembered for idempotency, and the loop on
//! the ingest thread that applies ticks as they come.

use std::cell::RefCell;
use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hermes_ingest::EventSink;

use crate::pipeline::Pipeline;

/// A validated webhook tick on its way to the ingest thread.
#[derive(Debug)]
pub struct TickRequest {
    /// The canonical webhook frame (see `hermes_ingest::webhook`).
    pub frame: Vec<u8>,
    /// Its idempotency key.
    pub event_id: String,
    /// Answered once the tick is in the ring (or refused).
    pub reply: tokio::sync::oneshot::Sender<TickOutcome>,
}

/// What became of a tick.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TickOutcome {
    /// Decoded and pushed into the ring.
    Accepted,
    /// This `event_id` was applied before: acknowledged, not applied again.
    Duplicate,
    /// The decoder refused it.
    Rejected(String),
}

/// Event ids remembered for idempotency.
const SEEN_IDS: usize = 1 << 20;

/// The event ids of applied ticks; past [`SEEN_IDS`] the oldest is forgotten.
#[derive(Default)]
pub(crate) struct SeenIds {
    set: HashSet<String>,
    order: VecDeque<String>,
}

impl SeenIds {
    /// Whether a tick with this id was applied.
    pub(crate) fn contains(&self, event_id: &str) -> bool {
        self.set.contains(event_id)
    }

    /// Remembers an applied tick.
    pub(crate) fn insert(&mut self, event_id: String) {
        if self.order.len() >= SEEN_IDS {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        self.set.insert(event_id.clone());
        self.order.push_back(event_id);
    }
}

/// Applies ticks from `rx` until the sender is gone or the run is `done`.
pub(crate) async fn serve<S: EventSink>(
    rx: Option<tokio::sync::mpsc::Receiver<TickRequest>>,
    ctx: &RefCell<Pipeline<'_, S>>,
    done: &AtomicBool,
) {
    let Some(mut rx) = rx else { return };
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        tokio::select! {
            req = rx.recv() => match req {
                Some(req) => ctx.borrow_mut().tick(req),
                None => return,
            },
            _ = tick.tick() => {
                // Relaxed: see `supervise`.
                if done.load(Ordering::Relaxed) {
                    return;
                }
            }
        }
    }
}
