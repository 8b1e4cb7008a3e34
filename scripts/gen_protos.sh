#!/usr/bin/env bash
# Regenerate the committed Python stubs from protos/ (tests/test_protos.py checks they match).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m grpc_tools.protoc -I . --python_out=. --pyi_out=. --grpc_python_out=. protos/v1/*.proto
