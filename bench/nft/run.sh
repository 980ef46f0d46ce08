#!/bin/sh
# Applies COUNT bans (default 10000) through warden's nftables backend as one transaction
# and through one `nft add element` process per ban, in a fresh network namespace, and
# prints both with their ratio. Needs root, nft and iproute2.
set -eu
cd "$(dirname "$0")/../.."
exec cargo bench -j2 --bench nft_batch -- "${1:-10000}"
