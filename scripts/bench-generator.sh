#!/usr/bin/env bash
# Is the load generator ever the bottleneck? Measures loadtest against wrk on the same
# cheap endpoint (the API with --alloc-chars 0 --delay-ms 0), with the same number of
# connections, one run each, and prints both request rates and their ratio.
#
#   scripts/bench-generator.sh            # 50 connections, 10 s each
#   CONNECTIONS=100 SECONDS_EACH=20 scripts/bench-generator.sh
#
# Installs wrk (Debian package) if missing. Targets 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."

connections=${CONNECTIONS:-50}
seconds=${SECONDS_EACH:-10}

source scripts/bench-lib.sh
ensure_wrk
# BIN_DIR: binaries built already (scripts/bench --smoke uses the test build's); else release.
bin=${BIN_DIR:-./target/release}
[ -n "${BIN_DIR:-}" ] || cargo build --release -q

work=$(mktemp -d)
api=
trap '[ -z "$api" ] || kill "$api" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

start_null_api $bin/purchasing-api "$work/PurchaseOrders.txt"
write_post_lua "$work/post.lua"

echo "== wrk: $connections connections, ${seconds}s, POST =123 to $url" >&2
wrk -t2 -c"$connections" -d"${seconds}s" -s "$work/post.lua" "$url/api/StockReplenishmentRequests" | tee "$work/wrk.txt" >&2
wrk_rate=$(awk '/^Requests\/sec:/ {print $2}' "$work/wrk.txt")

echo "== loadtest: $connections virtual users (one kept-alive connection each), ${seconds}s" >&2
$bin/loadtest run --profile step --users "$connections" --step-users 0 \
    --max-users "$connections" --duration "$seconds" --connection reuse \
    --url "$url" --out "$work/loadtest" >"$work/loadtest.txt" 2>&1 || { cat "$work/loadtest.txt" >&2; exit 1; }
lt_rate=$(python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["throughput"]["requests_per_s"], 1))' "$work/loadtest/report.json")
lt_failed=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["requests"]; print(r["total"]-r["acknowledged"])' "$work/loadtest/report.json")

ratio=$(python3 -c "print(round($lt_rate / $wrk_rate, 2))")
echo
echo "connections: $connections, ${seconds}s each, endpoint: --alloc-chars 0 --delay-ms 0"
echo "wrk:        $wrk_rate requests/s"
echo "loadtest:   $lt_rate requests/s (failed: $lt_failed)"
echo "ratio:      $ratio (loadtest / wrk)"
