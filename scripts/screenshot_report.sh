#!/usr/bin/env bash
# Screenshot a claims report in headless Chromium, to look at it as a person would.
#   scripts/screenshot_report.sh [reports/claims.html] [reports/claims.png]
# Needs Debian's chromium (apt-get install chromium). The flags keep Chromium off the network.
set -euo pipefail
page="$(realpath "${1:-reports/claims.html}")"
out="${2:-${page%.html}.png}"
profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
    --disable-component-update --disable-sync --user-data-dir="$profile" --window-size=1200,${SHOT_HEIGHT:-2400} \
    --screenshot="$out" "file://$page" 2>/dev/null
echo "wrote $out"
