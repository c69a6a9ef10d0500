//! # hermes-bench
//!
//! The Hermes benchmark harness. Every stage records hdrhistogram percentiles (p50, p90,
//! p99, p99.9, max) and a throughput, next to a baseline measured in the same run, and
//! the ratio between them; the machine (CPU model, core count, pinning, load) is part of
//! every result. Output is one JSON document per run ([`report::Report`], schema in
//! `bench/README.md`) plus a table; [`compare`] checks a run against an accepted one in
//! `perf-baselines/`.
//!
//! Stages ([`stages`]): parse, decimal, book, ring, shm, e2e (with the idle strategies),
//! ws, nats (through a 3-node JetStream cluster it starts), persist, export, memory.
//! [`soak`]: the real `hermes run` for an hour against the simulator with faults and
//! PostgreSQL restarts, sampled for leaks and checked for lost rows. The binary is
//! `cargo run --release -p bench -- --help`.

pub mod compare;
pub mod frames;
pub mod machine;
pub mod report;
pub mod soak;
pub mod stages;
pub mod util;
