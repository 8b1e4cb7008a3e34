#!/usr/bin/env bash
# The README's test command: install (idempotent), then run the whole suite on three workers
# (pytest-xdist). Even on two cores a third worker pays: much of the suite waits on
# real-time streams, a browser, a Node client and server starts, and the third worker's
# CPU-bound modules fill those waits (tests/conftest.py says how modules are grouped).
# Extra arguments go to pytest, and a later -n wins: `bash scripts/test.sh -n 0` runs it
# in one process.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
bash scripts/install_test_deps.sh
exec .venv/bin/python -m pytest -q -n 3 "$@"
