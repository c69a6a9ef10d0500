#!/usr/bin/env bash
# Proves the README's two commands on a bare Debian machine: builds a minimal Debian root
# with debootstrap (no PostgreSQL, no tmux, no compiler beyond what the Rust toolchain
# needs to link), binds the host's Rust toolchain into it read-only, makes a clean clone
# of this repository there, and runs, as the README says and timing each:
#
#   cargo run --release -p hermes -- demo     (the main job)
#   scripts/test.sh                           (every test; installs what the tests need)
#
# Not part of CI: it builds everything from scratch (a release and a debug build) and
# downloads Debian packages, so it takes tens of minutes on 2 cores. Run as root:
#
#   scripts/bare-machine-check.sh [ROOT_DIR]   # default /var/tmp/hermes-bare
#
# The log of each step and the timings go to ROOT_DIR/check/ (timings.txt at the end).
# HERMES_BARE_REUSE=1 keeps an existing root instead of building a new one;
# HERMES_BARE_REV=COMMIT checks that commit instead of HEAD.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
root="${1:-/var/tmp/hermes-bare}"
out="$root/check"
[ "$(id -u)" -eq 0 ] || { echo "bare-machine-check: run as root (debootstrap, mounts, chroot)" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "bare-machine-check: installing debootstrap" >&2; apt-get install -y -q debootstrap; }
suite="$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")"
rustup_home="${RUSTUP_HOME:-$HOME/.rustup}"
cargo_home="${CARGO_HOME:-$HOME/.cargo}"
toolchain="$(rustup show active-toolchain | cut -d' ' -f1)"

mounted=()
cleanup() {
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
        umount -l "${mounted[$i]}" 2>/dev/null || true
    done
}
trap cleanup EXIT
bind() { # SRC DST [ro]
    mkdir -p "$2"
    mount --bind "$1" "$2"
    mounted+=("$2")
    if [ "${3:-}" = ro ]; then mount -o remount,bind,ro "$2"; fi
}

start=$(date +%s)
if [ "${HERMES_BARE_REUSE:-0}" != 1 ] || [ ! -x "$root/bin/bash" ]; then
    rm -rf "$root"
    mkdir -p "$root"
    echo "bare-machine-check: debootstrap $suite into $root" >&2
    # minbase plus what `cargo` itself needs to fetch crates and link: certificates, git,
    # a C toolchain's linker (the Rust toolchain links through cc).
    debootstrap --variant=minbase --include=ca-certificates,git,gcc,libc6-dev,procps,sudo \
        "$suite" "$root" http://deb.debian.org/debian >"$root.debootstrap.log" 2>&1 ||
        { tail -20 "$root.debootstrap.log" >&2; exit 1; }
fi
mkdir -p "$out"
boot=$(($(date +%s) - start))

mountfs() { # TYPE DST [OPTIONS]
    mkdir -p "$2"
    mount -t "$1" ${3:+-o "$3"} "$1" "$2"
    mounted+=("$2")
}
mountfs proc "$root/proc"
mountfs sysfs "$root/sys"
# debootstrap made the device nodes; the root gets its own /dev/shm (the demo's shm file
# must not meet the host's) and ptys.
mountfs tmpfs "$root/dev/shm" mode=1777
mountfs devpts "$root/dev/pts" newinstance,ptmxmode=0666
cp /etc/resolv.conf "$root/etc/resolv.conf"
# A host whose network goes through a TLS-intercepting proxy trusts an extra CA: carry the
# host's local CAs (and proxy variables) into the root, as its own admin would install
# them. On an ordinary network there are none and nothing changes.
if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
    mkdir -p "$root/usr/local/share/ca-certificates"
    cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
    chroot "$root" update-ca-certificates >/dev/null 2>&1 || true
fi
bind "$rustup_home" "$root/opt/rustup" ro
# cargo's binaries from the host, its registry cache in the root (written by the build).
bind "$cargo_home/bin" "$root/opt/cargo-bin" ro
rm -rf "$root/work"
mkdir -p "$root/work"
git clone -q "$repo" "$root/work/hermes"
if [ -n "${HERMES_BARE_REV:-}" ]; then git -C "$root/work/hermes" checkout -q "$HERMES_BARE_REV"; fi
echo "bare-machine-check: checking $(git -C "$root/work/hermes" log --oneline -1)" >&2
# A clean clone holds only what is committed: the same tree CI gets. The shared captures
# sit beside it, as in CI.
if [ -d "$repo/../shared" ]; then bind "$repo/../shared" "$root/work/shared" ro; fi

cat >"$root/work/env.sh" <<EOF
export RUSTUP_HOME=/opt/rustup CARGO_HOME=/root/.cargo RUSTUP_TOOLCHAIN=$toolchain
export PATH=/opt/cargo-bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8
unset DATABASE_URL
$(for v in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
    if [ -n "${!v:-}" ]; then printf 'export %s=%q\n' "$v" "${!v}"; fi
done)
$(if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
    echo 'export SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt CARGO_HTTP_CAINFO=/etc/ssl/certs/ca-certificates.crt PIP_CERT=/etc/ssl/certs/ca-certificates.crt NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt'
fi)
cd /work/hermes
EOF

step() { # NAME COMMAND
    local name=$1
    shift
    local t0
    t0=$(date +%s)
    echo "bare-machine-check: [$name] $*" >&2
    if chroot "$root" /bin/bash -c ". /work/env.sh && $*" >"$out/$name.log" 2>&1; then
        echo "$name ok $(($(date +%s) - t0)) s" | tee -a "$out/timings.txt" >&2
    else
        echo "$name FAILED after $(($(date +%s) - t0)) s (log: $out/$name.log)" | tee -a "$out/timings.txt" >&2
        tail -30 "$out/$name.log" >&2
        return 1
    fi
}

: >"$out/timings.txt"
echo "debootstrap $boot s" >>"$out/timings.txt"
status=0
step demo 'cargo run --release -p hermes -- demo' || status=1
step test 'scripts/test.sh' || status=1
echo "bare-machine-check: total $(($(date +%s) - start)) s; timings in $out/timings.txt" >&2
cat "$out/timings.txt"
exit $status
