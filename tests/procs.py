"""Start real server processes for tests and wait until their health says SERVING.

Every server binds 127.0.0.1 port 0 and writes the port it got to a file;
:func:`start_server` reads it, then polls ``grpc.health.v1`` until SERVING.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2

from services.common.health import serving_status

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class ServerProcess:
    name: str
    proc: subprocess.Popen
    port: int
    log_path: Path
    env: dict = field(default_factory=dict)
    tls_root_cert: bytes | None = None
    """PEM root of a server with TLS_CERT: then health checks go over TLS to localhost."""

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def health(self, timeout_s: float = 2.0, service: str = "") -> int:
        """The serving status; grpc.RpcError while the server is unreachable."""
        if self.tls_root_cert is None:
            return serving_status(self.address, service, timeout_s)
        return serving_status(f"localhost:{self.port}", service, timeout_s,
                              grpc.ssl_channel_credentials(self.tls_root_cert))

    def stop(self, timeout_s: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_server(module: str, name: str, args: list[str] = (), env: dict | None = None,
                 wait_serving: bool = True, timeout_s: float = 120.0,
                 serving_service: str = "", tls_root_cert: bytes | None = None) -> ServerProcess:
    """Run ``python -m module --port 0 --port-file F *args``; wait for the port (and SERVING).

    ``serving_service``: the health name to wait for (e.g. ``"vad"`` for a gateway whose
    ASR worker is deliberately absent: its overall health then stays NOT_SERVING)."""
    tmp = Path(tempfile.mkdtemp(prefix=f"{name}-"))
    port_file = tmp / "port"
    log_path = tmp / "server.log"
    full_env = dict(os.environ)
    # As the launcher and compose do for torch workers: no OpenMP spin-waiting on shared cores.
    full_env.update({"PYTHONUNBUFFERED": "1", "OMP_WAIT_POLICY": "PASSIVE"})
    full_env.update(env or {})
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", module, "--port", "0", "--port-file", str(port_file), *args],
            cwd=ROOT, env=full_env, stdout=log_file, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout_s
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"{name} did not start:\n{log_path.read_text(errors='replace')}")
        time.sleep(0.05)
    server = ServerProcess(name, proc, int(port_file.read_text()), log_path, full_env, tls_root_cert)
    if wait_serving:
        wait_for_serving(server, deadline, serving_service)
    return server


def wait_for_serving(server: ServerProcess, deadline: float, service: str = "") -> None:
    while True:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited with {server.proc.returncode}:\n{server.log()}")
        try:
            if server.health(service=service) == health_pb2.HealthCheckResponse.SERVING:
                return
        except grpc.RpcError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"{server.name} never reported SERVING:\n{server.log()}")
        time.sleep(0.1)


def free_port() -> int:
    """A currently free loopback port (for servers that must be told their port up front)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
