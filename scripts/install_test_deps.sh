#!/usr/bin/env bash
# System packages the test suite needs beyond the virtualenv: Debian's chromium for the
# browser-page test (Playwright drives it; its own browser download needs the internet), and a
# CJK font so the page's screenshot shows Chinese text rather than empty boxes.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && [ -d /usr/share/fonts/truetype/wqy ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
echo "== installing chromium and a CJK font (apt) for the browser test"
$SUDO apt-get update -q >/dev/null
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends chromium fonts-wqy-zenhei >/dev/null
