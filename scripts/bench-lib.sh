# What the benchmark scripts share; sourced, not run. Each script sets `work` (its temporary
# directory) before calling these, and kills "$api" in its EXIT trap.

# wrk from Debian's package, if it is missing.
ensure_wrk() {
    if ! command -v wrk >/dev/null; then
        echo "installing wrk (Debian package)..." >&2
        apt-get update -qq && apt-get install -y -qq wrk >/dev/null
    fi
}

# The wrk script that sends the article's request: POST =123, form-encoded.
write_post_lua() {
    cat >"$1" <<'LUA'
wrk.method = "POST"
wrk.body = "=123"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
LUA
}

# start_null_api BIN ORDERS_FILE [FLAG...]: the API with no work per order (the lab's cost is
# what is measured), logging at warn — a line per request would measure the logger. Sets
# `api` (its PID) and `url`; exits the script with the API's stderr if it does not start.
start_null_api() {
    local bin=$1 orders=$2; shift 2
    rm -f "$work/api.out"
    "$bin" --bind 127.0.0.1:0 --orders-file "$orders" --alloc-chars 0 --delay-ms 0 --log warn "$@" \
        >"$work/api.out" 2>"$work/api.err" &
    api=$!
    for _ in $(seq 100); do grep -q listening "$work/api.out" 2>/dev/null && break; sleep 0.1; done
    url=$(sed -n 's/^listening on //p' "$work/api.out")
    [ -n "$url" ] || { echo "the API did not start:" >&2; cat "$work/api.err" >&2; exit 1; }
}

# Stops the API start_null_api started.
stop_api() {
    kill "$api"; wait "$api" 2>/dev/null || true; api=
}
