#!/usr/bin/env bash
# The README's test command: install (idempotent), then run the whole suite on two workers
# (pytest-xdist; most of the time is spent waiting for server processes to start and for
# real-time streams, so two workers nearly halve it even on two cores). Extra arguments go
# to pytest, and a later -n wins: `bash scripts/test.sh -n 0` runs it in one process.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
bash scripts/install_test_deps.sh
exec .venv/bin/python -m pytest -q -n 2 "$@"
