//! How the engine's threads wait when they have nothing to do: the book thread on an
//! empty ring, the ingest thread on a full one.

use std::time::{Duration, Instant};

/// How a thread waits when it has nothing to do (book thread: ring empty; ingest
/// thread: ring full).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

impl IdleStrategy {
    /// Every strategy, in the order the CLI lists them.
    pub const ALL: [IdleStrategy; 3] = [
        IdleStrategy::Spin,
        IdleStrategy::SpinYield,
        IdleStrategy::Backoff,
    ];

    /// The CLI name (`spin`, `spin-yield`, `backoff`).
    pub fn name(self) -> &'static str {
        match self {
            IdleStrategy::Spin => "spin",
            IdleStrategy::SpinYield => "spin-yield",
            IdleStrategy::Backoff => "backoff",
        }
    }
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
