#!/usr/bin/env bash
# Renders a report.html in headless Chromium (Debian's package) and saves a screenshot,
# proving the self-contained page actually renders in a real browser.
#
#   scripts/check-report-in-browser.sh REPORT_HTML OUT_PNG [WIDTHxHEIGHT]
#
# Installs chromium with apt-get when it is missing (needs root, as in CI containers).
# Network access by the browser is irrelevant: the page references nothing outside itself.
# Fails when the screenshot is missing or empty.
set -euo pipefail

if [[ $# -lt 2 || $# -gt 3 ]]; then
    echo "usage: $0 REPORT_HTML OUT_PNG [WIDTHxHEIGHT]" >&2
    exit 2
fi
report=$1
out=$2
size=${3:-1400x3000}
width=${size%x*}
height=${size#*x}

if [[ ! -s $report ]]; then
    echo "error: $report is missing or empty" >&2
    exit 1
fi

browser=""
for candidate in chromium chromium-browser; do
    if command -v "$candidate" >/dev/null 2>&1; then
        browser=$(command -v "$candidate")
        break
    fi
done
if [[ -z $browser ]]; then
    echo "chromium not found; installing it with apt-get (may take a few minutes)" >&2
    sudo=""
    if [[ $(id -u) -ne 0 ]]; then
        sudo="sudo"
    fi
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core
    browser=$(command -v chromium)
fi

abs_report=$(cd "$(dirname "$report")" && pwd)/$(basename "$report")
mkdir -p "$(dirname "$out")"
rm -f "$out"
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT

# --no-sandbox: CI containers run as root, where Chromium's sandbox refuses to start.
timeout 120 "$browser" \
    --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --disable-dev-shm-usage --hide-scrollbars \
    --user-data-dir="$profile" \
    --window-size="$width,$height" \
    --screenshot="$out" \
    "file://$abs_report" >"$profile/chromium.log" 2>&1 || {
    status=$?
    cat "$profile/chromium.log" >&2
    echo "error: chromium exited with status $status" >&2
    exit 1
}

if [[ ! -s $out ]]; then
    cat "$profile/chromium.log" >&2
    echo "error: no screenshot was written to $out" >&2
    exit 1
fi
echo "screenshot: $out ($(wc -c <"$out") bytes) of $report"
