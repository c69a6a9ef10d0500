#!/usr/bin/env bash
# Runs under Miri (the nightly toolchain's UB checker) the unit tests of the code that
# has `unsafe` or atomics, or that hands-parses bytes: the book and fixed point
# (hermes-book), the seqlock on heap memory (hermes-shm's `seqlock` module: the region
# itself maps files, which Miri cannot), the capture reader and the JSON scanner
# (hermes-ingest). CI runs it (.ci/run). Needs `rustup component add --toolchain nightly
# miri rust-src`, which it installs when missing.
#
#   scripts/miri.sh            # every target below
#   PROPTEST_CASES=N           # proptest cases per property under Miri (default 8)
set -euo pipefail
cd "$(dirname "$0")/.."
if ! cargo +nightly miri --version >/dev/null 2>&1; then
    echo "miri.sh: installing Miri on the nightly toolchain" >&2
    rustup component add --toolchain nightly miri rust-src
fi
export PROPTEST_CASES="${PROPTEST_CASES:-8}"
# Isolation off: the capture tests write temporary files. Many seeds would multiply the
# run time; one is the CI smoke.
export MIRIFLAGS="${MIRIFLAGS:--Zmiri-disable-isolation}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/miri}"
cargo +nightly miri test --locked -p hermes-book --lib
cargo +nightly miri test --locked -p hermes-shm --lib seqlock
cargo +nightly miri test --locked -p hermes-ingest --lib -- capture json
