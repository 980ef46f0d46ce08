#!/usr/bin/env bash
# Decoding speed of `warden pflog` against `tcpdump -n -e -r` on the same generated file.
#
#   bench/pflog.sh [RECORDS] [SNAPLEN]      (defaults: 1000000 records, snap length 160)
#
# Generates a pflog pcap file with examples/pflog_gen.rs (all three header layouts, IPv4
# and IPv6, TCP/UDP/ICMP), then times one run of each reader with output to /dev/null,
# using the release build. Prints wall times, records per second and the ratio.
set -euo pipefail

records=${1:-1000000}
snaplen=${2:-160}
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/bench/out"
mkdir -p "$out"
file="$out/pflog-$records-$snaplen.pcap"

cargo build --release -j2 --quiet --manifest-path "$root/Cargo.toml" --bin warden --example pflog_gen
target=${CARGO_TARGET_DIR:-$root/target}
if [ ! -s "$file" ]; then
    "$target/release/examples/pflog_gen" "$file" "$records" "$snaplen"
fi
warden="$target/release/warden"
command -v tcpdump >/dev/null || { echo "tcpdump is not installed" >&2; exit 1; }

# Both print local time; pin the zone so neither pays for a different one.
export TZ=UTC

wall() {
    local start end
    start=$(date +%s.%N)
    "$@" >/dev/null 2>"$out/stderr.txt" || { echo "failed: $*" >&2; cat "$out/stderr.txt" >&2; exit 1; }
    end=$(date +%s.%N)
    awk -v a="$start" -v b="$end" 'BEGIN { printf "%.6f", b - a }'
}

div() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.6f", a / b }'; }

# Same number of lines from both, so both read every record.
lines_w=$("$warden" pflog "$file" | wc -l)
lines_t=$(tcpdump -n -e -r "$file" 2>/dev/null | wc -l)
[ "$lines_w" = "$records" ] || { echo "warden printed $lines_w lines, expected $records" >&2; exit 1; }
[ "$lines_t" = "$records" ] || { echo "tcpdump printed $lines_t lines, expected $records" >&2; exit 1; }

t_text=$(wall "$warden" pflog "$file")
t_json=$(wall "$warden" pflog --json "$file")
t_tcpdump=$(wall tcpdump -n -e -r "$file")

size=$(stat -c %s "$file")
printf 'file: %s (%d records, %d bytes, snaplen %d)\n' "$file" "$records" "$size" "$snaplen"
printf '%-28s %8.3f s  %12.0f records/s\n' "warden pflog" "$t_text" "$(div "$records" "$t_text")"
printf '%-28s %8.3f s  %12.0f records/s\n' "warden pflog --json" "$t_json" "$(div "$records" "$t_json")"
printf '%-28s %8.3f s  %12.0f records/s\n' "tcpdump -n -e -r" "$t_tcpdump" "$(div "$records" "$t_tcpdump")"
printf 'ratio (tcpdump time / warden time): %.2f\n' "$(div "$t_tcpdump" "$t_text")"
