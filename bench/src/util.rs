//! Clocks, pinning, histograms and CPU accounting shared by the stages.

use std::time::Duration;

use hdrhistogram::Histogram;

use crate::report::Figure;

/// `CLOCK_MONOTONIC` in nanoseconds. The clock is shared by every process on the host,
/// so a stamp taken in one process can be subtracted from a reading in another.
#[inline]
pub fn mono_ns() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid, exclusively borrowed `ts`.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// `CLOCK_REALTIME` in nanoseconds (Unix time), for stamps the engine itself writes.
#[inline]
pub fn real_ns() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: as in `mono_ns`.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// Spins (with a sleep when far away) until `CLOCK_MONOTONIC` reaches `t`.
#[inline]
pub fn wait_until(t: i64) {
    loop {
        let now = mono_ns();
        if now >= t {
            return;
        }
        let left = t - now;
        if left > 200_000 {
            std::thread::sleep(Duration::from_nanos((left - 120_000) as u64));
        } else {
            std::hint::spin_loop();
        }
    }
}

/// The cores this process may run on, read once before anything is pinned (the list
/// reflects the calling thread's mask, which pinning narrows).
pub fn core_ids() -> Vec<core_affinity::CoreId> {
    static CORES: std::sync::OnceLock<Vec<core_affinity::CoreId>> = std::sync::OnceLock::new();
    CORES
        .get_or_init(|| core_affinity::get_core_ids().unwrap_or_default())
        .clone()
}

/// Pins the calling thread to the `i`-th core of [`core_ids`]; `false` when there is no
/// such core or pinning failed.
pub fn pin(i: usize) -> bool {
    match core_ids().get(i) {
        Some(c) => core_affinity::set_for_current(*c),
        None => false,
    }
}

/// A histogram of values in the given resolution (1 = ns, 1000 = ps), up to `max_s`.
pub fn hist(max: u64) -> Histogram<u64> {
    Histogram::new_with_bounds(1, max.max(2), 3).expect("valid histogram bounds")
}

/// Records `v`, clamping into the histogram's range.
#[inline]
pub fn rec(h: &mut Histogram<u64>, v: i64) {
    let v = (v.max(1) as u64).min(h.high());
    h.saturating_record(v);
}

/// Percentiles of `h`, whose values are `scale` units of the figure's unit (e.g. values
/// in ps and a figure in ns: `scale = 1000`).
pub fn figure(h: &Histogram<u64>, scale: f64) -> Figure {
    if h.is_empty() {
        return Figure::default();
    }
    let q = |p: f64| h.value_at_quantile(p) as f64 / scale;
    Figure {
        value: None,
        p50: Some(q(0.5)),
        p90: Some(q(0.9)),
        p99: Some(q(0.99)),
        p999: Some(q(0.999)),
        max: Some(h.max() as f64 / scale),
        mean: Some(h.mean() / scale),
        count: Some(h.len()),
    }
}

/// CPU time (user + system) of this process so far.
pub fn cpu_time() -> Duration {
    rusage_cpu(libc::RUSAGE_SELF)
}

fn rusage_cpu(who: libc::c_int) -> Duration {
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes one rusage into the exclusively borrowed `ru`.
    unsafe { libc::getrusage(who, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// CPU time of reaped child processes so far.
pub fn children_cpu_time() -> Duration {
    rusage_cpu(libc::RUSAGE_CHILDREN)
}

/// Resident set size of this process in KiB, from `/proc/self/status`.
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Measures the cost of one [`mono_ns`] call, in ns (p50 of many back-to-back calls).
pub fn timer_overhead_ns() -> f64 {
    let mut h = hist(1_000_000);
    for _ in 0..100_000 {
        let a = mono_ns();
        let b = mono_ns();
        rec(&mut h, b - a);
    }
    h.value_at_quantile(0.5) as f64
}
