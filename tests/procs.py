"""Real server processes for the tests: the process harness, under the names the tests import.

Every server binds 127.0.0.1 port 0 and writes the port it got to a file;
:func:`start_server` reads it, then polls ``grpc.health.v1`` until SERVING. The
implementation is :mod:`services.common.processes`, shared with the benchmarks and
the launcher.
"""

from __future__ import annotations

from services.common.processes import ROOT, ServerProcess, free_port, start_server, stop_process, wait_for_serving

__all__ = ["ROOT", "ServerProcess", "free_port", "start_server", "stop_process", "wait_for_serving"]
