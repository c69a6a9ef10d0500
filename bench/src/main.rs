//! # bench
//!
//! The Hermes benchmark harness will live here: hdrhistogram percentiles per stage, each
//! beside a baseline measured in the same run, written as JSON and compared against
//! `perf-baselines/`. It is not written yet; running it says so and exits non-zero rather
//! than printing numbers nobody measured.

fn main() {
    eprintln!("bench: the benchmark harness is not implemented yet (see the open benchmark issue)");
    std::process::exit(2);
}
