#!/usr/bin/env bash
# Installs the system tools the tests use, only when they are missing, so CI and a fresh
# machine run the same tests as a developer's. Safe to run repeatedly.
#
#   tmux     drives `hermes top` in a real terminal (tools/tests/top.rs)
#   python3  the Python shm reader and the reference book builder (usually present)
#   cc       compiles the C shm reader against shm/include/hermes_shm.h (usually present)
#   postgresql  initdb/postgres for the private clusters the persister tests start
#            (persist/tests, tools/tests/persist.rs; hermes_persist::local_pg)
set -euo pipefail

missing=()
command -v tmux >/dev/null 2>&1 || missing+=(tmux)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
command -v cc >/dev/null 2>&1 || missing+=(gcc)
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    missing+=(postgresql)
fi

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "ci-deps: missing ${missing[*]} and no apt-get to install them; the tests that need them will print a note and skip" >&2
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "ci-deps: missing ${missing[*]}; run as root (or with sudo) to install them" >&2
        exit 1
    fi
fi
echo "ci-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
