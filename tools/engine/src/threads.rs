//! The engine's threads: an ingest thread (decoding into events) and a book thread
//! (applying them and publishing to shm), joined by an rtrb SPSC ring, each pinned to its
//! own core where the machine has cores to spare.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hermes_book::clock::unix_ns;
use hermes_book::kernels::KernelConfig;
use hermes_book::Event;
use hermes_shm::{ShmWriter, WriterOptions};

use crate::idle::{Idle, IdleStrategy};
use crate::metrics::EngineMetrics;
use crate::publisher::Publisher;
use crate::ring::{RingFullPolicy, RingSink, RingStats};
use crate::EngineError;

/// A second consumer of the book thread's events (the NATS publisher's ring): called on
/// the book thread after each event is applied, with the market as it is then. It must
/// not block (push to a ring; drop and count when it is full).
pub trait EventTap: Send {
    /// One applied event.
    fn event(&mut self, ev: &Event, market: &hermes_book::Market);
    /// The book thread found no event (a chance to retry what a full ring refused).
    fn idle(&mut self, _market: &hermes_book::Market) {}
    /// The engine is done: no more events.
    fn finish(&mut self, _market: &hermes_book::Market) {}
}

/// A place for an [`EventTap`] in the (cloneable) [`EngineOptions`]; the book thread
/// takes it out when it starts.
#[derive(Clone, Default)]
pub struct EventTapSlot(Arc<std::sync::Mutex<Option<Box<dyn EventTap>>>>);

impl EventTapSlot {
    /// A slot holding `tap`.
    pub fn new(tap: Box<dyn EventTap>) -> EventTapSlot {
        EventTapSlot(Arc::new(std::sync::Mutex::new(Some(tap))))
    }

    fn take(&self) -> Option<Box<dyn EventTap>> {
        self.0.lock().ok().and_then(|mut t| t.take())
    }
}

impl std::fmt::Debug for EventTapSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventTapSlot")
    }
}

/// Engine settings.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// The shm file, or none.
    pub shm_path: Option<PathBuf>,
    /// Slots in the shm file.
    pub shm_slots: u32,
    /// Make the shm file group-readable (0640).
    pub shm_group_readable: bool,
    /// Ring capacity in events.
    pub ring_capacity: usize,
    /// Idle strategy of both threads.
    pub idle: IdleStrategy,
    /// Ring-full policy.
    pub ring_full: RingFullPolicy,
    /// Pin threads to cores.
    pub pin: bool,
    /// Where the book thread reports (shared with `/metrics`).
    pub metrics: Arc<EngineMetrics>,
    /// Ring counters (shared with `/metrics`).
    pub ring_stats: Arc<RingStats>,
    /// Settings of the analytics kernels.
    pub kernels: KernelConfig,
    /// Record, per commit, receive time → visible in shm (meaningful for live feeds,
    /// where the receive time is this host's clock at the socket).
    pub measure_visible: bool,
    /// A second consumer of the applied events (the NATS publisher), if any.
    pub event_tap: EventTapSlot,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            shm_path: None,
            shm_slots: 256,
            shm_group_readable: false,
            ring_capacity: 1 << 16,
            idle: IdleStrategy::SpinYield,
            ring_full: RingFullPolicy::Block,
            pin: true,
            metrics: Arc::default(),
            ring_stats: Arc::default(),
            measure_visible: false,
            kernels: Default::default(),
            event_tap: EventTapSlot::default(),
        }
    }
}

/// What the engine hands back when the ingest side is done.
pub struct EngineResult<T> {
    /// The market and its last slot images as they ended.
    pub books: Publisher,
    /// Whatever the ingest closure returned.
    pub ingest: T,
    /// Ring counters.
    pub ring: Arc<RingStats>,
    /// Wall time from start to the book thread's last event.
    pub elapsed: Duration,
    /// Whether threads were pinned.
    pub pinned: bool,
    /// Receive → visible-in-shm latency per commit, ns (when `measure_visible`).
    pub visible_ns: hdrhistogram::Histogram<u64>,
}

/// Runs `ingest` on a pinned ingest thread feeding a pinned book thread, until `ingest`
/// returns and the ring is drained.
pub fn run<T, F>(opts: &EngineOptions, ingest: F) -> Result<EngineResult<T>, EngineError>
where
    T: Send + 'static,
    F: FnOnce(&mut RingSink) -> T + Send + 'static,
{
    let shm = match &opts.shm_path {
        Some(p) => Some(
            ShmWriter::create(
                p,
                WriterOptions {
                    slots: opts.shm_slots,
                    group_readable: opts.shm_group_readable,
                    replace_foreign: false,
                },
            )
            .map_err(|source| EngineError::Shm {
                path: p.clone(),
                source,
            })?,
        ),
        None => None,
    };
    // Read the core list once, before pinning anything: get_core_ids() reports the
    // calling thread's affinity mask, which pinning would narrow for later calls.
    let cores = if opts.pin {
        core_affinity::get_core_ids().unwrap_or_default()
    } else {
        Vec::new()
    };
    let pinned = cores.len() >= 2;
    if opts.pin && !pinned {
        tracing::info!(
            cores = cores.len(),
            "not pinning threads: need 2 cores, have {}",
            cores.len()
        );
    }
    let (tx, mut rx) = rtrb::RingBuffer::<Event>::new(opts.ring_capacity);
    let stats = opts.ring_stats.clone();
    let metrics = opts.metrics.clone();
    let start = Instant::now();
    let idle = opts.idle;
    let measure_visible = opts.measure_visible;
    let kernels = opts.kernels;
    let book_core = pinned.then(|| cores[1]);
    let mut tap = opts.event_tap.take();
    let book = std::thread::Builder::new()
        .name("hermes-book".into())
        .spawn(move || {
            if let Some(c) = book_core {
                core_affinity::set_for_current(c);
            }
            let mut books = Publisher::new(shm, kernels);
            // 1 ns to 1 h at 3 significant digits; larger values are clamped to 1 h.
            let mut visible =
                hdrhistogram::Histogram::<u64>::new_with_bounds(1, 3_600_000_000_000, 3)
                    .expect("valid histogram bounds");
            let mut idle = Idle::new(idle);
            let mut last_beat = Instant::now();
            let mut n = 0u64;
            // Relaxed stores below: statistics for `/metrics`, nothing synchronises on them.
            let beat = |books: &Publisher, metrics: &EngineMetrics| {
                books.heartbeat();
                metrics
                    .heartbeat_ns
                    .store(unix_ns() as u64, Ordering::Relaxed);
                metrics
                    .crossed
                    .store(books.stats().market.crossed, Ordering::Relaxed);
            };
            beat(&books, &metrics);
            loop {
                match rx.pop() {
                    Ok(ev) => {
                        if let Event::Commit {
                            exch_ts_ns,
                            recv_ts_ns,
                            ..
                        } = ev
                        {
                            if exch_ts_ns > 0 {
                                metrics
                                    .recv_lag
                                    .observe_ns((recv_ts_ns - exch_ts_ns).max(0) as u64);
                            }
                        }
                        n += 1;
                        if measure_visible {
                            if let Event::Commit { recv_ts_ns, .. } = ev {
                                books.apply(&ev);
                                if let Some(t) = &mut tap {
                                    t.event(&ev, books.market());
                                }
                                // Saturating: a histogram record never fails the thread.
                                visible.saturating_record((unix_ns() - recv_ts_ns).max(0) as u64);
                                idle.reset();
                                continue;
                            }
                        }
                        if n & 63 == 0 {
                            let t = Instant::now();
                            books.apply(&ev);
                            metrics.apply.observe_ns(t.elapsed().as_nanos() as u64);
                            metrics.events.store(n, Ordering::Relaxed);
                        } else {
                            books.apply(&ev);
                        }
                        if let Some(t) = &mut tap {
                            t.event(&ev, books.market());
                        }
                        idle.reset();
                        if n & 255 == 0 && last_beat.elapsed() >= Duration::from_millis(100) {
                            beat(&books, &metrics);
                            last_beat = Instant::now();
                        }
                    }
                    Err(_) if rx.is_abandoned() => {
                        // The producer is gone; anything pushed before is visible now.
                        while let Ok(ev) = rx.pop() {
                            books.apply(&ev);
                            if let Some(t) = &mut tap {
                                t.event(&ev, books.market());
                            }
                            n += 1;
                        }
                        break;
                    }
                    Err(_) => {
                        if let Some(t) = &mut tap {
                            t.idle(books.market());
                        }
                        metrics.events.store(n, Ordering::Relaxed);
                        if last_beat.elapsed() >= Duration::from_millis(100) {
                            beat(&books, &metrics);
                            last_beat = Instant::now();
                        }
                        idle.wait();
                    }
                }
            }
            metrics.events.store(n, Ordering::Relaxed);
            beat(&books, &metrics);
            if let Some(t) = &mut tap {
                t.finish(books.market());
            }
            drop(tap);
            (books, start.elapsed(), visible)
        })
        .map_err(|source| EngineError::Thread {
            name: "book",
            source,
        })?;
    let ingest_core = pinned.then(|| cores[0]);
    let sink_stats = stats.clone();
    let policy = opts.ring_full;
    let ing = std::thread::Builder::new()
        .name("hermes-ingest".into())
        .spawn(move || {
            if let Some(c) = ingest_core {
                core_affinity::set_for_current(c);
            }
            let mut sink = RingSink {
                tx,
                policy,
                idle: Idle::new(idle),
                stats: sink_stats,
                pushed: 0,
            };
            ingest(&mut sink)
        })
        .map_err(|source| EngineError::Thread {
            name: "ingest",
            source,
        })?;
    let ingest = ing.join().map_err(|_| EngineError::Panicked("ingest"))?;
    let (books, elapsed, visible_ns) = book.join().map_err(|_| EngineError::Panicked("book"))?;
    Ok(EngineResult {
        books,
        ingest,
        ring: stats,
        elapsed,
        pinned,
        visible_ns,
    })
}
