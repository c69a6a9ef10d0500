#!/usr/bin/env bash
# Installs the system tools the tests use, only when they are missing, so CI and a fresh
# machine run the same tests as a developer's. Safe to run repeatedly. Exits non-zero,
# naming the tools, when it cannot provide them all: CI runs the tests with
# HERMES_REQUIRE_ALL=1, under which a test whose tool is missing fails instead of skipping.
#
#   tmux     drives `hermes top` in a real terminal (tools/tests/integration/top.rs)
#   python3  the Python shm reader and the reference book builder (usually present)
#   cc, c++  build the C reader and the header as strict C and as C++ (shm/include/hermes_shm.h)
#   postgresql  initdb/postgres for the private clusters the persister tests start
#            (persist/tests, tools/tests/integration/{persist,http}.rs; hermes_persist::local_pg),
#            and, when the tests run as root, the `postgres` user the server runs as
#   chromium, node + npm  the web dashboard in a real headless browser
#            (tools/tests/integration/dashboard.rs, bench/browser/), driven by playwright-core,
#            which `npm ci` installs into tools/tests/browser/node_modules (no browser download)
#   nats-server  the JetStream clusters of the scale-out tests (tools/tests/integration/nats.rs;
#            hermes_nats::testing); Debian installs it to /usr/sbin
set -euo pipefail

# The same probes the tests use (common::require, local_pg::available_or_required): a tool
# counts when it runs, not merely when a name (say, a pyenv shim) is on the PATH.
runs() { "$@" >/dev/null 2>&1 </dev/null; }
have_postgres() {
    { command -v initdb && command -v postgres; } >/dev/null 2>&1 ||
        ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1
}
missing_packages() {
    local m=()
    runs tmux -V || m+=(tmux)
    runs python3 --version || m+=(python3 python3-venv)
    # Debian splits venv (and the pip it seeds) out of python3.
    { runs python3 --version && ! runs python3 -c 'import ensurepip, venv'; } && m+=(python3-venv)
    runs cc --version || m+=(gcc)
    runs c++ --version || m+=(g++)
    have_postgres || m+=(postgresql)
    runs chromium --version || m+=(chromium)
    runs node --version || m+=(nodejs)
    runs npm --version || m+=(npm)
    { runs nats-server --version || runs /usr/sbin/nats-server --version; } || m+=(nats-server)
    echo "${m[@]+"${m[@]}"}"
}
# As root the server runs as `postgres` (initdb refuses root); the postgresql package
# creates that user, binaries installed some other way may not have.
needs_server_user() { [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; }

read -r -a missing <<<"$(missing_packages)"
if [ ${#missing[@]} -gt 0 ]; then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "ci-deps: the tests need ${missing[*]}, and there is no apt-get to install them; install them by hand (or run the tests without HERMES_REQUIRE_ALL=1, which skips the tests that need them)" >&2
        exit 1
    fi
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then
            # Without a terminal to ask for a password on, sudo must not wait for one.
            if [ -t 0 ]; then SUDO="sudo"; else SUDO="sudo -n"; fi
        else
            echo "ci-deps: the tests need ${missing[*]}; run as root (or with sudo) to install them" >&2
            exit 1
        fi
    fi
    echo "ci-deps: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    if ! { $SUDO apt-get update -qq &&
        $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"; }; then
        echo "ci-deps: apt-get could not install ${missing[*]}" >&2
        exit 1
    fi
    read -r -a missing <<<"$(missing_packages)"
    if [ ${#missing[@]} -gt 0 ]; then
        echo "ci-deps: still missing after apt-get: ${missing[*]}" >&2
        exit 1
    fi
fi
if needs_server_user; then
    echo "ci-deps: creating the \`postgres\` user the test clusters run as" >&2
    useradd --system --user-group --no-create-home postgres
fi
# playwright-core for the browser tests, from the committed package-lock.json.
browser_dir="$(dirname "$0")/../tools/tests/browser"
if [ ! -f "$browser_dir/node_modules/playwright-core/package.json" ]; then
    echo "ci-deps: npm ci in tools/tests/browser (playwright-core)" >&2
    if ! (cd "$browser_dir" && npm ci --no-audit --no-fund --loglevel=error); then
        echo "ci-deps: npm ci failed in tools/tests/browser" >&2
        exit 1
    fi
fi
# The Python research stack (pyarrow, duckdb, scikit-learn, numpy) in the project venv
# target/pyenv, for the Parquet export tests (tools/tests/integration/export.rs) and
# examples/python. Skipped when the venv already imports them.
root="$(cd "$(dirname "$0")/.." && pwd)"
pyenv="$root/target/pyenv"
if ! "$pyenv/bin/python3" -c 'import pyarrow, duckdb, sklearn, numpy' >/dev/null 2>&1; then
    echo "ci-deps: pip install -r examples/python/requirements.txt into target/pyenv" >&2
    if ! { { [ -x "$pyenv/bin/python3" ] || python3 -m venv "$pyenv"; } &&
        "$pyenv/bin/python3" -m pip install -q -r "$root/examples/python/requirements.txt"; }; then
        echo "ci-deps: could not install the Python research stack into target/pyenv (python3-venv missing, or no PyPI)" >&2
        exit 1
    fi
fi
