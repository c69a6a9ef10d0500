#!/usr/bin/env bash
# Fuzzes every parser with cargo-fuzz (libFuzzer, on the nightly toolchain, under
# AddressSanitizer): SECONDS per target, one target after another. The targets and the
# properties they check are in ingest/fuzz (README, "Fuzzing"). Installs cargo-fuzz when
# missing and writes the seed corpora first, from the project's generator
# (ingest/fuzz/examples/seeds.rs); inputs that reach new code are kept in
# ingest/fuzz/corpus/<target>/ for the next run.
#
#   scripts/fuzz.sh SECONDS [TARGET...]    # default: every target
#
# "Every target" is what `cargo fuzz list` reads from the [[bin]] entries of
# ingest/fuzz/Cargo.toml: binance, capture, coinbase, config, decimal, exchange (Coinbase
# Exchange), futures (Binance USD-M and COIN-M), shm, webhook.
#
# Bounded allocation is part of the contract: an input that makes a target allocate more
# than 256 MB at once (-malloc_limit_mb) or grow past 2 GB (-rss_limit_mb), or spend more
# than 10 s, is a finding like a panic. A finding is saved under
# ingest/fuzz/artifacts/<target>/ and replays with
#   cargo +nightly fuzz run --fuzz-dir ingest/fuzz <target> <file>
# The script runs every target, prints executions per target, and fails if any found
# something.
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-}"
if ! [[ "$secs" =~ ^[0-9]+$ ]] || [ "$secs" -eq 0 ]; then
    echo "usage: scripts/fuzz.sh SECONDS [TARGET...]" >&2
    exit 2
fi
shift

fuzz_dir=ingest/fuzz
# The fuzz build (nightly, sanitizer flags) keeps out of the main target/ directory.
export CARGO_TARGET_DIR=target/fuzz

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz.sh: the nightly toolchain is needed (rustup toolchain install nightly)" >&2
    exit 1
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list --fuzz-dir "$fuzz_dir")
fi

seeds="$CARGO_TARGET_DIR/seeds"
rm -rf "$seeds"
cargo +nightly run --quiet --manifest-path "$fuzz_dir/Cargo.toml" \
    --example seeds -- "$seeds"

# The targets that parse files write each input to a scratch file under TMPDIR.
tmp="$CARGO_TARGET_DIR/tmp"
mkdir -p "$tmp"
export TMPDIR="$PWD/$tmp"
trap 'rm -rf "$tmp"' EXIT

cargo +nightly fuzz build --fuzz-dir "$fuzz_dir"

logs="$CARGO_TARGET_DIR/logs"
mkdir -p "$logs"
failed=()
summary=()
for t in "${targets[@]}"; do
    case "$t" in
        decimal) max_len=256 ;;
        config) max_len=4096 ;;
        *) max_len=16384 ;;
    esac
    dict=()
    if [ -f "$fuzz_dir/dict/$t.dict" ]; then
        dict=("-dict=$fuzz_dir/dict/$t.dict")
    fi
    corpus="$fuzz_dir/corpus/$t"
    mkdir -p "$corpus" "$seeds/$t"
    log="$logs/$t.log"
    echo "fuzz.sh: $t for ${secs}s" >&2
    status=0
    cargo +nightly fuzz run --fuzz-dir "$fuzz_dir" "$t" "$corpus" "$seeds/$t" -- \
        -max_total_time="$secs" -max_len="$max_len" -timeout=10 \
        -rss_limit_mb=2048 -malloc_limit_mb=256 -print_final_stats=1 "${dict[@]}" \
        >"$log" 2>&1 || status=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -n 1)
    if [ "$status" -ne 0 ]; then
        failed+=("$t")
        summary+=("$(printf '%-9s FINDING after %s executions (log: %s)' "$t" "${execs:-?}" "$log")")
        grep -E '^(==[0-9]+==|thread .* panicked|SUMMARY|artifact_prefix|Test unit written)' "$log" |
            head -n 20 >&2 || true
    else
        summary+=("$(printf '%-9s %12s executions in %ss, peak RSS %s MB, corpus %s inputs' \
            "$t" "${execs:-?}" "$secs" "${rss:-?}" "$(find "$corpus" -type f | wc -l)")")
    fi
done

printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz.sh: findings in: ${failed[*]} (inputs under $fuzz_dir/artifacts/)" >&2
    exit 1
fi
