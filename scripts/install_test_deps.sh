#!/usr/bin/env bash
# System packages the test suite needs beyond the virtualenv: Debian's chromium for the
# browser-page test (Playwright drives it; its own browser download needs the internet), a
# CJK font so the page's screenshot shows Chinese text rather than empty boxes, and systemd's
# systemd-analyze for tests/test_systemd.py (it only parses unit files; nothing is started).
set -euo pipefail
packages=()
command -v chromium >/dev/null 2>&1 || packages+=(chromium)
[ -d /usr/share/fonts/truetype/wqy ] || packages+=(fonts-wqy-zenhei)
command -v systemd-analyze >/dev/null 2>&1 || packages+=(systemd)
if [ ${#packages[@]} -eq 0 ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
echo "== installing ${packages[*]} (apt) for the browser and systemd tests"
$SUDO apt-get update -q >/dev/null
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${packages[@]}" >/dev/null
