#!/usr/bin/env python
"""Exit 0 when a process's ``grpc.health.v1`` service answers SERVING, else 1.

The container health check of docker-compose.yml (Kubernetes uses its native
``grpc:`` probes instead)::

    python scripts/health_check.py 127.0.0.1:50052
    python scripts/health_check.py 127.0.0.1:50052 --service speech_analysis.worker.v1.AsrService

A Python script rather than the ``grpc_health_probe`` binary: the image
already has grpcio and grpcio-health-checking, and a downloaded binary would
be one more thing to pin and verify. The check itself is
:func:`services.common.health.check` (it imports only grpc).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.common.health import check  # noqa: E402

__all__ = ["check", "main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("address", help="HOST:PORT of the gRPC server")
    parser.add_argument("--service", default="", help="service name to ask about ('' = the whole server)")
    parser.add_argument("--timeout-s", type=float, default=3.0, help="deadline of the Check call")
    args = parser.parse_args(argv)
    status = check(args.address, args.service, args.timeout_s)
    if status != "SERVING":
        print(f"{args.address}: {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
