#!/usr/bin/env bash
# Runs every test of the workspace: unit, integration (real shm files read from other
# processes, C and Python readers, the Python reference books), doctests, and the loom
# model check of the seqlock (its own target dir: loom needs a different cfg). Each crate's
# integration tests are one binary (ripgrep's layout: tests/integration/main.rs with a
# module per area, or a single tests/*.rs), apart from shm's loom test.
#
# A test that needs a missing tool (tmux, cc, c++, python3, PostgreSQL; scripts/ci-deps.sh
# installs them) prints a note and returns early, unless HERMES_REQUIRE_ALL=1 (.ci/run sets
# it): then it fails and names the tool.
#
# First it installs what the tests use (scripts/ci-deps.sh: apt-get as root or through
# sudo, saying what it installs). When that is not possible it names what is missing and
# goes on (those tests note it and return), or stops when HERMES_REQUIRE_ALL=1.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! scripts/ci-deps.sh; then
    if [ "${HERMES_REQUIRE_ALL:-0}" = 1 ]; then
        echo "test.sh: HERMES_REQUIRE_ALL=1 and the tools above could not be installed" >&2
        exit 1
    fi
    echo "test.sh: going on without them: the tests that need them print a note and return" >&2
fi
cargo test --workspace --locked
# The reference oracle's own rules, on hand-written frames (stdlib only).
python3 -m unittest tools/tests/reference/test_book_reference.py
RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=target/loom \
    cargo test -p hermes-shm --test loom --release --locked
