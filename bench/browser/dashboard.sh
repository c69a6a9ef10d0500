#!/usr/bin/env bash
# The web dashboard under load in headless chromium (not a test; asserts nothing):
# 100 instruments updated faster than the SSE rate cap, `hermes serve` over the writer's shm
# file, the overview and then an instrument page open for --seconds each. Prints one JSON
# object (events/s reached against the cap, repaints/s, chromium CPU by process type,
# renderer main-thread busy time, hermes serve CPU) and writes it to target/bench/browser.json.
#
#   bench/browser/dashboard.sh [--seconds 20] [--instruments 100] [--sse-max-hz 20] [--speed 10x]
#
# Needs chromium, node and playwright-core (scripts/ci-deps.sh installs them). Builds the
# release binary unless HERMES_BIN names one.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -z "${HERMES_BIN:-}" ]; then
    cargo build --release -p hermes --locked >&2
    HERMES_BIN=target/release/hermes
fi
exec node bench/browser/dashboard.mjs --hermes "$HERMES_BIN" "$@"
