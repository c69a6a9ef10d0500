//! The engine's threads: an ingest thread (decoding into events) and a book thread
//! (applying them and publishing to shm), joined by an rtrb SPSC ring, each pinned to its
//! own core where the machine has cores to spare.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hermes_ingest::{Event, EventSink};
use hermes_shm::{ShmWriter, WriterOptions};

use crate::books::{unix_ns, Books};
use crate::metrics::EngineMetrics;

/// How a thread waits when it has nothing to do (book thread: ring empty; ingest
/// thread: ring full).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum IdleStrategy {
    /// Spin on the CPU: lowest latency, burns a whole core even when idle.
    Spin,
    /// Spin briefly, then `sched_yield`: low latency, still 100% CPU when idle, but other
    /// runnable threads get the core.
    SpinYield,
    /// Spin, yield for up to 2 ms of idleness, then sleep with exponential back-off
    /// (50 µs → 1 ms): near-zero CPU when the feed is quiet, yet no sleep's wake-up
    /// delay between the messages of a busy feed; up to ~1 ms after a quiet spell.
    Backoff,
}

/// What to do when the ring is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RingFullPolicy {
    /// Wait for room (counted): nothing is lost; the producer slows down.
    Block,
    /// Drop the newest event (counted). Books then miss updates; only for feeds where
    /// freshness beats completeness.
    DropNewest,
}

/// Waits according to an [`IdleStrategy`], escalating while idle.
pub struct Idle {
    strategy: IdleStrategy,
    round: u32,
    /// When the current idle spell started (Backoff's yield phase is timed).
    since: Option<Instant>,
}

/// How long Backoff keeps yielding before it starts to sleep: a feed that is merely
/// between two messages (tens of µs) never pays a sleep's wake-up delay.
const YIELD_PHASE: Duration = Duration::from_millis(2);

impl Idle {
    /// A new idle state.
    pub fn new(strategy: IdleStrategy) -> Idle {
        Idle {
            strategy,
            round: 0,
            since: None,
        }
    }

    /// Work was found: start over.
    #[inline]
    pub fn reset(&mut self) {
        self.round = 0;
        self.since = None;
    }

    /// Nothing to do: wait a little.
    #[inline]
    pub fn wait(&mut self) {
        self.round = self.round.saturating_add(1);
        match self.strategy {
            IdleStrategy::Spin => std::hint::spin_loop(),
            IdleStrategy::SpinYield => {
                if self.round < 100 {
                    std::hint::spin_loop()
                } else {
                    std::thread::yield_now()
                }
            }
            IdleStrategy::Backoff => {
                if self.round < 100 {
                    std::hint::spin_loop();
                    return;
                }
                let since = *self.since.get_or_insert_with(Instant::now);
                if since.elapsed() < YIELD_PHASE {
                    std::thread::yield_now();
                } else {
                    // Idle for a while: sleep, 50 µs doubling to 1 ms.
                    let exp = (self.round.saturating_sub(100) / 64).min(5);
                    std::thread::sleep(
                        Duration::from_micros(50 << exp).min(Duration::from_millis(1)),
                    );
                }
            }
        }
    }
}

/// Counters of the ring between ingest and book threads, shared with observers.
#[derive(Debug, Default)]
pub struct RingStats {
    /// Events pushed.
    pub pushed: AtomicU64,
    /// Times the producer found the ring full.
    pub full_waits: AtomicU64,
    /// Events dropped (only with [`RingFullPolicy::DropNewest`]).
    pub dropped: AtomicU64,
}

/// The ingest side of the ring, an [`EventSink`].
pub struct RingSink {
    tx: rtrb::Producer<Event>,
    policy: RingFullPolicy,
    idle: Idle,
    stats: Arc<RingStats>,
    pushed: u64,
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

impl RingSink {
    /// Events currently in the ring.
    pub fn occupancy(&self) -> usize {
        self.tx.buffer().capacity() - self.tx.slots()
    }
}

impl Drop for RingSink {
    fn drop(&mut self) {
        // Relaxed: the final count; the join of the thread orders it for the reader.
        self.stats.pushed.store(self.pushed, Ordering::Relaxed);
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
    pub kernels: hermes_book::kernels::KernelConfig,
    /// Record, per commit, receive time → visible in shm (meaningful for live feeds,
    /// where the receive time is this host's clock at the socket).
    pub measure_visible: bool,
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
        }
    }
}

/// What the engine hands back when the ingest side is done.
pub struct EngineResult<T> {
    /// The books as they ended.
    pub books: Books,
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
pub fn run<T, F>(opts: &EngineOptions, ingest: F) -> Result<EngineResult<T>>
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
                },
            )
            .with_context(|| format!("creating the shm region {}", p.display()))?,
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
    let book = std::thread::Builder::new()
        .name("hermes-book".into())
        .spawn(move || {
            if let Some(c) = book_core {
                core_affinity::set_for_current(c);
            }
            let mut books = Books::with_kernel_config(shm, kernels);
            // 1 ns to 1 h at 3 significant digits; larger values are clamped to 1 h.
            let mut visible =
                hdrhistogram::Histogram::<u64>::new_with_bounds(1, 3_600_000_000_000, 3)
                    .expect("valid histogram bounds");
            let mut idle = Idle::new(idle);
            let mut last_beat = Instant::now();
            let mut n = 0u64;
            // Relaxed stores below: statistics for `/metrics`, nothing synchronises on them.
            let beat = |books: &Books, metrics: &EngineMetrics| {
                books.heartbeat();
                metrics
                    .heartbeat_ns
                    .store(unix_ns() as u64, Ordering::Relaxed);
                metrics
                    .crossed
                    .store(books.stats.crossed, Ordering::Relaxed);
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
                            n += 1;
                        }
                        break;
                    }
                    Err(_) => {
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
            (books, start.elapsed(), visible)
        })
        .context("starting the book thread")?;
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
        .context("starting the ingest thread")?;
    let ingest = ing
        .join()
        .map_err(|_| anyhow::anyhow!("the ingest thread panicked"))?;
    let (books, elapsed, visible_ns) = book
        .join()
        .map_err(|_| anyhow::anyhow!("the book thread panicked"))?;
    Ok(EngineResult {
        books,
        ingest,
        ring: stats,
        elapsed,
        pinned,
        visible_ns,
    })
}

/// A flag set by SIGINT/SIGTERM.
pub fn shutdown_flag() -> Arc<AtomicBool> {
    static FLAG: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        SIGNALLED.store(Arc::as_ptr(&flag) as usize, Ordering::SeqCst);
        extern "C" fn on_signal(_: libc::c_int) {
            // SeqCst: pairs with the store above; the pointer is set before the handler
            // is installed and the Arc lives for the whole program (OnceLock).
            let p = SIGNALLED.load(Ordering::SeqCst) as *const AtomicBool;
            if !p.is_null() {
                // SAFETY: `p` points into the Arc kept alive forever by the OnceLock;
                // storing to an atomic is async-signal-safe.
                unsafe { (*p).store(true, Ordering::SeqCst) };
            }
        }
        for sig in [libc::SIGINT, libc::SIGTERM] {
            // SAFETY: installing a handler that only stores to an atomic.
            unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
        }
        flag
    })
    .clone()
}

static SIGNALLED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
