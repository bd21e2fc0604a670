#!/usr/bin/env bash
# What do durable acknowledgements cost? wrk against the API with the null workload
# (--alloc-chars 0 --delay-ms 0), once without and once with --durable, same connection
# count, one run each; prints both rates and their ratio. The orders file lives in
# $BENCH_DIR (default: a temporary directory under /var/tmp, a real disk rather than a
# tmpfs, where an fsync would cost nothing).
#
#   scripts/bench-durable.sh                          # 64 connections, 10 s each
#   CONNECTIONS=16 SECONDS_EACH=5 scripts/bench-durable.sh
#   API_BIN=/path/to/old/purchasing-api scripts/bench-durable.sh   # another build
#
# Installs wrk (Debian package) if missing. Targets 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."

connections=${CONNECTIONS:-64}
seconds=${SECONDS_EACH:-10}
api_bin=${API_BIN:-./target/release/purchasing-api}

source scripts/bench-lib.sh
ensure_wrk
[ -n "${API_BIN:-}" ] || cargo build --release -q -p purchasing-api

work=$(mktemp -d "${BENCH_DIR:-/var/tmp}/bench-durable.XXXXXX")
api=
trap '[ -z "$api" ] || kill "$api" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
write_post_lua "$work/post.lua"

# One run: starts the API with the given flags, wrk against it, prints requests/s.
measure() {
    local name=$1; shift
    rm -f "$work/PurchaseOrders.txt"
    start_null_api "$api_bin" "$work/PurchaseOrders.txt" "$@"
    echo "== $name: wrk, $connections connections, ${seconds}s, $*" >&2
    wrk -t2 -c"$connections" -d"${seconds}s" -s "$work/post.lua" \
        "$url/api/StockReplenishmentRequests" >"$work/wrk-$name.txt"
    stop_api
    local lines
    lines=$(wc -l <"$work/PurchaseOrders.txt")
    local rate
    rate=$(awk '/^Requests\/sec:/ {print $2}' "$work/wrk-$name.txt")
    grep -E "Latency|Non-2xx" "$work/wrk-$name.txt" >&2 || true
    echo "   $rate requests/s, $lines lines in the file" >&2
    echo "$rate"
}

plain=$(measure plain)
durable=$(measure durable --durable)
echo
echo "connections: $connections, ${seconds}s each, endpoint: --alloc-chars 0 --delay-ms 0, file in $work"
echo "not durable: $plain requests/s"
echo "--durable:   $durable requests/s"
echo "ratio:       $(python3 -c "print(round($durable / $plain, 3))") (durable / not durable)"
