#!/usr/bin/env bash
# Builds warden with profile-guided optimisation (PGO) and prints the binary's path on its
# last line of output.
#
#   bench/pgo.sh [FAIL2BAN_ROOT]
#
# Three steps, each in its own target directory under target/pgo/:
#   1. an instrumented release build (-Cprofile-generate);
#   2. training: `warden test` over logs that gen_logs.py makes with another seed than the
#      benchmark's (so the profile learns the workload, not the bytes it is measured on):
#      fail2ban's sshd filter in both modes on an auth log, nginx-botsearch on an access
#      log; with FAIL2BAN_ROOT (an unpacked fail2ban package), also every filter of
#      filter.d on that package's sample logs, for the breadth of patterns, date formats
#      and engines, and the daemon: a short run of the ingest benchmark
#      (bench/ingest/run.py --only warden: ten jails on fail2ban's sshd filter, the
#      `dummy` action, `warden metrics` polled);
#   3. the release build again with the merged profile (-Cprofile-use).
# Code no training run reaches (the firewall backends, pflog, the control commands other
# than metrics) is treated as cold and optimised for size: correct, possibly slower than
# in the release build.
#
# Needs llvm-profdata matching rustc's LLVM: the `llvm-tools` rustup component, added
# here when missing. Environment: TRAIN_LINES (lines per training log, default 200000).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
target=${CARGO_TARGET_DIR:-$root/target}
pgo=$target/pgo
f2b=${1:-}
lines=${TRAIN_LINES:-200000}
host=$(rustc -vV | sed -n 's/^host: //p')
profdata=$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata
if [ ! -x "$profdata" ]; then
    echo "== adding the llvm-tools rustup component (llvm-profdata)" >&2
    rustup component add llvm-tools >&2
fi
if [ ! -x "$profdata" ]; then
    echo "llvm-profdata not found at $profdata" >&2
    exit 1
fi

# With --target, RUSTFLAGS reach warden's own artifacts only, not build scripts or
# procedural macros (which would otherwise write profiles of their own).
echo "== instrumented build" >&2
rm -rf "$pgo/profiles"
mkdir -p "$pgo/profiles" "$pgo/train"
RUSTFLAGS="-Cprofile-generate=$pgo/profiles" \
    cargo build --release -j2 --bin warden --target "$host" --target-dir "$pgo/gen" >&2
gen=$pgo/gen/$host/release/warden

echo "== training" >&2
for kind in auth nginx; do
    log=$pgo/train/$kind-$lines.log
    if [ ! -s "$log" ]; then
        python3 "$root/bench/filter/gen_logs.py" "$kind" "$lines" "$log.tmp" train
        mv "$log.tmp" "$log"
    fi
done
export LLVM_PROFILE_FILE="$pgo/profiles/warden-%p-%m.profraw"
filter_d=""
if [ -n "$f2b" ]; then
    filter_d=$f2b/etc/fail2ban/filter.d
fi
# Without a fail2ban package, warden's own sshd and nginx-botsearch filters.
sshd=${filter_d:-$root/config/filter.d}/sshd.conf
nginx=${filter_d:-$root/config/filter.d}/nginx-botsearch.conf
"$gen" test --no-progress "$pgo/train/auth-$lines.log" "$sshd" >/dev/null
"$gen" test --no-progress "$pgo/train/auth-$lines.log" "$sshd[mode=aggressive]" >/dev/null
"$gen" test --no-progress "$pgo/train/nginx-$lines.log" "$nginx" >/dev/null
if [ -n "$filter_d" ]; then
    logs=$f2b/usr/lib/python3/dist-packages/fail2ban/tests/files/logs
    for log in "$logs"/*; do
        name=$(basename "$log")
        if [ -f "$filter_d/$name.conf" ]; then
            # Some samples need filter options to match; a run that fails teaches as well.
            "$gen" test --no-progress "$log" "$filter_d/$name.conf" >/dev/null 2>&1 || true
        fi
    done
    rm -rf "$pgo/ingest"
    mkdir -p "$pgo/ingest"
    python3 "$root/bench/ingest/run.py" --warden "$gen" --fail2ban "$f2b" --only warden \
        --lines 20000 --warden-lines 100000 --repeat 1 --pace 0 --addresses 5000 \
        --work "$pgo/ingest" >&2
fi
unset LLVM_PROFILE_FILE
"$profdata" merge -o "$pgo/merged.profdata" "$pgo"/profiles/*.profraw

echo "== optimised build" >&2
# Cargo does not look into the profile: a new one is a new path, so that every crate is
# built again with it.
sum=$(sha256sum "$pgo/merged.profdata" | cut -c1-16)
rm -f "$pgo"/merged-*.profdata
mv "$pgo/merged.profdata" "$pgo/merged-$sum.profdata"
RUSTFLAGS="-Cprofile-use=$pgo/merged-$sum.profdata" \
    cargo build --release -j2 --bin warden --target "$host" --target-dir "$pgo/use" >&2
echo "$pgo/use/$host/release/warden"
