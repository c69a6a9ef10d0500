//! Integration tests of the shm region: one test binary with a module per area (ripgrep's
//! layout). The loom model check stays in `tests/loom.rs`, its own binary: its tests exist
//! only under `--cfg loom`, with which `scripts/test.sh` builds it apart.
//!
//! * [`readers`]: the C and Python readers print exactly what the Rust writer published,
//!   refuse files they do not understand, and tell the writer's state.
//! * [`stress`]: no torn reads, across threads and processes, under a writer at full speed.
//!
//! No test passes by skipping: a test that needs `cc`, `c++` or `python3` asks
//! [`common::require`], which on a developer's machine without the tool prints a note (the
//! test skips that part) and with `HERMES_REQUIRE_ALL=1`, which `.ci/run` sets, fails
//! naming the tool.

mod common;

mod readers;
mod stress;
