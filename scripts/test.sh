#!/usr/bin/env bash
# Runs every test of the workspace: unit, integration (real shm files read from other
# processes, C and Python readers, the Python reference books), doctests, and the loom
# model check of the seqlock (its own target dir: loom needs a different cfg).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --locked
RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=target/loom \
    cargo test -p hermes-shm --test loom --release --locked
