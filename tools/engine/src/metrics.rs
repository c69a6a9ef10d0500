//! Counters and histograms the engine keeps for `/metrics`, and the Prometheus text
//! exposition they are rendered in. Hot-path updates are relaxed atomic adds; the book
//! thread samples its apply time (one event in 64) rather than timing every event.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_utils::CachePadded;

/// A fixed-bucket histogram of durations, Prometheus style (cumulative on render).
#[derive(Debug)]
pub struct Histogram {
    /// Upper bounds in nanoseconds.
    bounds_ns: &'static [u64],
    /// Per-bucket counts (not cumulative), one more than `bounds_ns` for +Inf.
    counts: Vec<AtomicU64>,
    sum_ns: AtomicU64,
    count: AtomicU64,
}

/// Buckets from 100 ns to 10 s.
pub const LATENCY_BUCKETS_NS: &[u64] = &[
    100,
    250,
    500,
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    10_000_000_000,
];

impl Histogram {
    /// A histogram with the given upper bounds (ns, ascending).
    pub fn new(bounds_ns: &'static [u64]) -> Histogram {
        Histogram {
            bounds_ns,
            counts: (0..=bounds_ns.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_ns: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// Records one duration.
    #[inline]
    pub fn observe_ns(&self, ns: u64) {
        let i = self.bounds_ns.partition_point(|b| *b < ns);
        // Relaxed: statistics; a scrape may see a sum and a count a few events apart.
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Renders as a Prometheus histogram in seconds.
    pub fn render(&self, out: &mut String, name: &str, help: &str, labels: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cum = 0u64;
        for (i, b) in self.bounds_ns.iter().enumerate() {
            cum += self.counts[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{}\"}} {cum}",
                *b as f64 / 1e9
            );
        }
        cum += self.counts[self.bounds_ns.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cum}");
        let lb = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(
            out,
            "{name}_sum{lb} {}",
            self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9
        );
        let _ = writeln!(out, "{name}_count{lb} {cum}");
    }
}

/// What the book thread measures. The counters sit on their own cache lines: the book
/// thread writes them while the HTTP thread reads.
#[derive(Debug)]
pub struct EngineMetrics {
    /// Events popped from the ring and applied.
    pub events: CachePadded<AtomicU64>,
    /// Book apply time per event (sampled: 1 in 64).
    pub apply: Histogram,
    /// Receive time minus exchange time of applied frames.
    pub recv_lag: Histogram,
    /// Unix ns of the book thread's last heartbeat (it beats every 100 ms while alive).
    pub heartbeat_ns: CachePadded<AtomicU64>,
    /// Crossed or locked commits reported.
    pub crossed: CachePadded<AtomicU64>,
}

impl Default for EngineMetrics {
    fn default() -> Self {
        EngineMetrics {
            events: CachePadded::default(),
            apply: Histogram::new(LATENCY_BUCKETS_NS),
            recv_lag: Histogram::new(LATENCY_BUCKETS_NS),
            heartbeat_ns: CachePadded::default(),
            crossed: CachePadded::default(),
        }
    }
}

/// Appends one counter or gauge.
pub fn metric(out: &mut String, kind: &str, name: &str, help: &str, samples: &[(&str, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, v) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {v}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {v}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_renders_cumulative_buckets() {
        let h = Histogram::new(&[1_000, 10_000]);
        for ns in [500, 1_000, 5_000, 50_000] {
            h.observe_ns(ns);
        }
        let mut s = String::new();
        h.render(&mut s, "x_seconds", "help", "venue=\"a\"");
        assert!(
            s.contains("x_seconds_bucket{venue=\"a\",le=\"0.000001\"} 2"),
            "{s}"
        );
        assert!(
            s.contains("x_seconds_bucket{venue=\"a\",le=\"0.00001\"} 3"),
            "{s}"
        );
        assert!(
            s.contains("x_seconds_bucket{venue=\"a\",le=\"+Inf\"} 4"),
            "{s}"
        );
        assert!(s.contains("x_seconds_count{venue=\"a\"} 4"), "{s}");
        assert!(s.contains("x_seconds_sum{venue=\"a\"} 0.0000565"), "{s}");
    }
}
