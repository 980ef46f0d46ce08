#!/usr/bin/env bash
# End-to-end ingest of warden's daemon against fail2ban-server (Debian's fail2ban 1.0.2,
# run from the unpacked package) on the same kind of log, ten jails, 100,000 distinct
# failing addresses, both daemons pinned to one core. See bench/ingest/README.md.
#
#   bench/ingest/run.sh [run.py options]      e.g. --lines 60000 --repeat 5 --only warden
#
# Needs root for apt-get when a package is missing: python3 and python3-pyinotify
# (Debian's interpreter and the inotify backend fail2ban uses), util-linux (taskset).
# Environment: INGEST_TIMEOUT (seconds for the whole comparison, default 3600),
# WARDEN_FAIL2BAN_DEB (a local fail2ban .deb instead of `apt-get download`).
# Results: printed, and written to target/bench-ingest/results.json.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
out="$target/bench-ingest"
mkdir -p "$out"
work=$(mktemp -d "$out/work.XXXXXX")
driver_pid=
keep=0
for arg in "$@"; do
    [ "$arg" = --keep ] && keep=1
done

cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    if [ -n "$driver_pid" ] && kill -0 "$driver_pid" 2>/dev/null; then
        kill -TERM "$driver_pid" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$driver_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$driver_pid" 2>/dev/null || true
    fi
    # The daemons the driver started (it stops them itself; this is for when it could not).
    # A pid counts only while its command line still names our work directory.
    if [ -f "$work/pids" ]; then
        while read -r pid; do
            if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF "$work/"; then
                kill -KILL "$pid" 2>/dev/null || true
            fi
        done <"$work/pids"
    fi
    if [ "$keep" = 1 ]; then
        echo "run directories kept in $work" >&2
    else
        rm -rf "$work"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

# Debian packages, installed only when missing.
need=()
for pkg in python3 python3-pyinotify util-linux; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        need+=("$pkg")
    fi
done
if [ ${#need[@]} -gt 0 ]; then
    echo "installing: ${need[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >&2
    apt-get install -y -q --no-install-recommends "${need[@]}" >&2
fi
python=/usr/bin/python3

# The fail2ban package: the tree the integration tests unpacked, else our own copy.
fail2ban=
for dir in "$target/tmp/fail2ban-deb" "$out/fail2ban-deb"; do
    if [ -f "$dir/.unpacked" ] && [ -d "$dir/root/usr/lib/python3/dist-packages/fail2ban" ]; then
        fail2ban="$dir/root"
        break
    fi
done
if [ -z "$fail2ban" ]; then
    dir="$out/fail2ban-deb"
    rm -rf "$dir"
    mkdir -p "$dir/dl"
    if [ -n "${WARDEN_FAIL2BAN_DEB:-}" ]; then
        deb=$WARDEN_FAIL2BAN_DEB
    else
        (cd "$dir/dl" && { apt-get download -q fail2ban=1.0.2-2 || apt-get download -q fail2ban; }) >&2
        deb=$(ls "$dir"/dl/*.deb)
    fi
    dpkg -x "$deb" "$dir/root"
    rm -rf "$dir/dl"
    touch "$dir/.unpacked"
    fail2ban="$dir/root"
fi
if ! grep -q '"1.0.2"\|'"'1.0.2'" "$fail2ban/usr/lib/python3/dist-packages/fail2ban/version.py"; then
    echo "warning: the fail2ban package is not 1.0.2: $(grep -m1 version "$fail2ban/usr/lib/python3/dist-packages/fail2ban/version.py")" >&2
fi

cargo build --release -j2 --quiet --manifest-path "$root/Cargo.toml" --bin warden
warden="$target/release/warden"

echo "warden $(git -C "$root" describe --always --dirty 2>/dev/null || echo '?'), fail2ban from $fail2ban" >&2
timeout --signal=TERM --kill-after=30 "${INGEST_TIMEOUT:-3600}" \
    "$python" "$root/bench/ingest/run.py" \
    --warden "$warden" --fail2ban "$fail2ban" --python "$python" \
    --work "$work" --json "$out/results.json" "$@" &
driver_pid=$!
wait "$driver_pid"
