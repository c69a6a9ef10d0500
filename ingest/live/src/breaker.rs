//! Reconnect pacing of one venue connection: exponential back-off with jitter between
//! attempts, and a circuit breaker that opens after `breaker_failures` consecutive
//! failures, waits out `breaker_cooldown`, then half-opens for one probe.

use std::time::Instant;

use crate::config::ConnPolicy;

/// Circuit-breaker states, as exported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum BreakerState {
    /// Connecting normally.
    Closed = 0,
    /// Too many failures: waiting out the cool-down.
    Open = 1,
    /// Cool-down over: one probe attempt.
    HalfOpen = 2,
}

impl BreakerState {
    /// Name for logs and stats.
    pub fn name(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half-open",
        }
    }
    pub(crate) fn from_u8(v: u8) -> BreakerState {
        match v {
            1 => BreakerState::Open,
            2 => BreakerState::HalfOpen,
            _ => BreakerState::Closed,
        }
    }
}

/// Exponential back-off with jitter plus the circuit breaker.
pub(crate) struct Breaker {
    /// Consecutive failures.
    failures: u32,
    /// No attempt before this.
    pub(crate) next_attempt: Instant,
    pub(crate) state: BreakerState,
    rng: fastrand::Rng,
}

impl Breaker {
    pub(crate) fn new(seed: u64) -> Breaker {
        Breaker {
            failures: 0,
            next_attempt: Instant::now(),
            state: BreakerState::Closed,
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    /// An attempt failed or a connection was lost: back off, or open the breaker.
    pub(crate) fn failure(&mut self, p: &ConnPolicy, venue: &str) {
        self.failures += 1;
        if self.failures >= p.breaker_failures {
            if self.state != BreakerState::Open {
                tracing::warn!(
                    venue,
                    failures = self.failures,
                    "circuit breaker open for {:?}",
                    p.breaker_cooldown
                );
            }
            self.state = BreakerState::Open;
            self.next_attempt = Instant::now() + p.breaker_cooldown;
            return;
        }
        let exp = p
            .reconnect_min
            .saturating_mul(1u32 << (self.failures - 1).min(16));
        let cap = exp.min(p.reconnect_max);
        // Jitter: uniformly in [cap/2, cap].
        let jitter = cap.mul_f64(0.5 + (self.rng.u64(0..1000) as f64) / 2000.0);
        self.next_attempt = Instant::now() + jitter.max(p.reconnect_min.min(cap));
    }

    /// The connection stayed up long enough: forget past failures.
    pub(crate) fn success(&mut self, venue: &str) {
        self.connected(venue);
        self.failures = 0;
    }

    /// A connection succeeded: a half-open breaker closes (the probe worked).
    pub(crate) fn connected(&mut self, venue: &str) {
        if self.state != BreakerState::Closed {
            tracing::info!(venue, "circuit breaker closed: the probe connected");
        }
        self.state = BreakerState::Closed;
    }

    /// Before an attempt: an open breaker whose cool-down passed half-opens.
    pub(crate) fn attempt(&mut self, venue: &str) {
        if self.state == BreakerState::Open {
            tracing::info!(venue, "circuit breaker half-open: probing");
            self.state = BreakerState::HalfOpen;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn backoff_grows_caps_and_opens_the_breaker() {
        let p = ConnPolicy {
            reconnect_min: Duration::from_secs(1),
            reconnect_max: Duration::from_secs(8),
            ..Default::default()
        };
        let mut b = Breaker::new(3);
        let mut delays = Vec::new();
        for _ in 0..4 {
            let before = Instant::now();
            b.failure(&p, "t");
            delays.push(b.next_attempt.duration_since(before));
            assert_eq!(b.state, BreakerState::Closed);
        }
        // Jittered in [cap/2, cap] with caps 1, 2, 4, 8 s.
        for (d, cap) in delays.iter().zip([1.0, 2.0, 4.0, 8.0]) {
            let s = d.as_secs_f64();
            assert!(s >= cap / 2.0 - 0.01 && s <= cap + 0.01, "{s} vs cap {cap}");
        }
        b.failure(&p, "t");
        assert_eq!(b.state, BreakerState::Open);
        b.attempt("t");
        assert_eq!(b.state, BreakerState::HalfOpen);
        b.success("t");
        assert_eq!((b.state, b.failures), (BreakerState::Closed, 0));
    }
}
