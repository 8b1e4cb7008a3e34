#!/usr/bin/env bash
# The README's test command: install (idempotent), then run the whole suite on three workers
# (pytest-xdist; much of the time is spent waiting for server processes to start and for
# real-time streams, so three workers keep two cores busy: one runs the tests of the shared
# stack, two the rest). Extra arguments go to pytest, and a later -n wins:
# `bash scripts/test.sh -n 0` runs it in one process.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
bash scripts/install_test_deps.sh
# Bytecode caching on, even where the environment turns it off: pytest keeps each test
# module's assert-rewritten bytecode in tests/__pycache__, and without it every worker
# rewrites all of them again (~2.5 s of CPU each, three workers).
unset PYTHONDONTWRITEBYTECODE
exec .venv/bin/python -m pytest -q -n 3 "$@"
