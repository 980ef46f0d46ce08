#!/usr/bin/env bash
# Filter throughput: `warden test` against fail2ban-regex (Debian's fail2ban 1.0.2) and
# against fail2ban-rs, on generated logs, every tool pinned to one core. Builds warden
# (the release build, and a profile-guided one with bench/pgo.sh), fetches the other two
# tools into the target directory, generates the logs, runs compare.py and writes its
# table into README.md. See README.md for what is measured.
#
# Environment:
#   LINES=1000000       lines per generated log
#   CORE=0              the core every tool is pinned to (taskset -c)
#   REPEAT=3            runs of warden and fail2ban-rs per case (the fastest is kept)
#   F2B_REPEAT=1        runs of fail2ban-regex per case (about a minute each)
#   FAIL2BAN_RS_VERSION='^1.5'
#   WARDEN_FAIL2BAN_DEB=path/to/fail2ban_1.0.2-2_all.deb   instead of apt-get download
#   NO_README=1         print the table only
#   PGO=0               measure the release build only (no profile-guided build)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
target=${CARGO_TARGET_DIR:-$root/target}
work=$target/bench-filter
tools=$target/bench-tools
lines=${LINES:-1000000}
mkdir -p "$work" "$tools"

echo "== building warden (release)"
cargo build --release -j2 --bin warden
warden=$target/release/warden

if [ ! -x /usr/bin/time ]; then
    echo "== /usr/bin/time is missing: installing Debian's 'time' package"
    apt-get install -y -q time
fi
if ! command -v taskset >/dev/null; then
    echo "taskset (util-linux) is needed" >&2
    exit 1
fi

# Debian's fail2ban 1.0.2: the unpacked tree the integration tests keep, else our own.
f2b=""
for cand in "$target/tmp/fail2ban-deb" "$work/fail2ban"; do
    if [ -f "$cand/.unpacked" ]; then
        f2b=$cand/root
        break
    fi
done
if [ -z "$f2b" ]; then
    echo "== fetching Debian's fail2ban package"
    rm -rf "$work/fail2ban"
    mkdir -p "$work/fail2ban/download"
    if [ -n "${WARDEN_FAIL2BAN_DEB:-}" ]; then
        deb=$WARDEN_FAIL2BAN_DEB
    else
        (cd "$work/fail2ban/download" &&
            { apt-get download -q fail2ban=1.0.2-2 || apt-get download -q fail2ban; })
        deb=$(ls "$work/fail2ban/download"/*.deb | head -n 1)
    fi
    dpkg -x "$deb" "$work/fail2ban/root"
    touch "$work/fail2ban/.unpacked"
    f2b=$work/fail2ban/root
fi
if ! grep -q '1\.0\.2' "$f2b/usr/lib/python3/dist-packages/fail2ban/version.py"; then
    echo "warning: the fail2ban package is not 1.0.2:" \
        "$(grep -i version "$f2b/usr/lib/python3/dist-packages/fail2ban/version.py" | head -n 1)"
fi

pgo=()
if [ "${PGO:-1}" != 0 ]; then
    echo "== building warden with profile-guided optimisation (bench/pgo.sh)"
    pgo=(--warden-pgo "$("$root/bench/pgo.sh" "$f2b" | tail -n 1)")
fi

rs=$tools/fail2ban-rs/bin/fail2ban-rs
if [ ! -x "$rs" ]; then
    echo "== installing fail2ban-rs from crates.io into $tools/fail2ban-rs"
    cargo install fail2ban-rs --version "${FAIL2BAN_RS_VERSION:-^1.5}" \
        --root "$tools/fail2ban-rs" -j2
fi

for kind in auth nginx; do
    log=$work/$kind-$lines.log
    if [ ! -s "$log" ]; then
        echo "== generating $log"
        python3 "$here/gen_logs.py" "$kind" "$lines" "$log.tmp"
        mv "$log.tmp" "$log"
    fi
done

readme=()
if [ -z "${NO_README:-}" ]; then
    readme=(--readme "$here/README.md")
fi
exec python3 "$here/compare.py" \
    --warden "$warden" \
    "${pgo[@]}" \
    --fail2ban "$f2b" \
    --fail2ban-rs "$rs" \
    --work "$work" \
    --auth-log "$work/auth-$lines.log" \
    --nginx-log "$work/nginx-$lines.log" \
    --core "${CORE:-0}" \
    --repeat "${REPEAT:-3}" \
    --f2b-repeat "${F2B_REPEAT:-1}" \
    "${readme[@]}"
