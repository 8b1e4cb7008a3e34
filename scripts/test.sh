#!/usr/bin/env bash
# The README's test command: install (idempotent), then run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
bash scripts/install_test_deps.sh
exec .venv/bin/python -m pytest -q "$@"
