#!/usr/bin/env bash
# Smoke run of the benchmark harness (CI): every stage at quick sizes, then a comparison
# with the accepted baseline for this machine class (perf-baselines/) that prints the
# changes but never fails on timing: CI machines are shared, and the run proves that the
# harness works, it asserts no time. No network needed; the persist stage starts and stops
# its own PostgreSQL, or is skipped with a note when the server binaries are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
# BENCH_PROFILE=dev (what CI uses) reuses the test build instead of a release build of
# the whole workspace: the run proves the harness, its times are not comparable.
profile=(--release)
if [ "${BENCH_PROFILE:-release}" = dev ]; then
    profile=()
fi
cargo run "${profile[@]}" --locked -p bench -- --quick --out "$dir/bench-quick.json"
cargo run "${profile[@]}" --locked -q -p bench -- compare "$dir/bench-quick.json" --no-fail
