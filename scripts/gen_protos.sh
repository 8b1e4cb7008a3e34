#!/usr/bin/env bash
# Regenerate the committed Python stubs from protos/ (tests/test_protos.py checks they match).
#
# The include root is protos/: speech_analysis/v1/*.proto (public API) generate
# speech_analysis/v1/*_pb2*.py, speech_analysis/worker/v1/*.proto (internal
# worker services) generate speech_analysis/worker/v1/*_pb2*.py.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m grpc_tools.protoc -I protos --python_out=. --pyi_out=. --grpc_python_out=. \
  protos/speech_analysis/v1/*.proto protos/speech_analysis/worker/v1/*.proto
