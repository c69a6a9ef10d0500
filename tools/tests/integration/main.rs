//! Integration tests of the `hermes` binary: one test binary with a module per area
//! (ripgrep's layout), so the suite links once instead of once per file.
//!
//! * [`chaos`]: one live run through PostgreSQL kill -9, feed faults, SIGSTOP and a full
//!   journal disk, against an undisturbed replay of what it kept.
//! * [`cli`]: replay into a real shm file, read back by other processes and checked
//!   against the Python reference in `tests/reference/`; malformed input, gaps, torn tails.
//! * [`dashboard`]: `hermes serve` and the web dashboard in headless chromium.
//! * [`export`]: `hermes export` read back with pyarrow and DuckDB; `--parquet` after kill -9.
//! * [`http`]: the HTTP face of `hermes run` on a loopback port.
//! * [`live`]: `hermes run` and `hermes record` against `hermes sim`, with faults.
//! * [`persist`]: PostgreSQL: kill -9 and rerun, SIGINT, `db migrate`, `demo`.
//! * [`persist_nats`]: `hermes persist --nats` through kill -9 of itself and of a NATS node.
//! * [`top`]: `hermes top --once`, and the live view driven in tmux.
//!
//! No test passes by skipping. A test that needs a system tool asks [`common::require`]
//! (or `hermes_persist::local_pg::available_or_required` for PostgreSQL): on a developer's
//! machine without the tool it prints a note and returns early; with
//! `HERMES_REQUIRE_ALL=1`, which `.ci/run` sets, it fails and names the tool. Only the real
//! recordings in `../shared/captures`, test data rather than a tool, may be absent.

mod common;

mod chaos;
mod cli;
mod dashboard;
mod export;
mod http;
mod live;
mod nats;
mod persist;
mod persist_nats;
mod top;
