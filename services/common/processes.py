"""The process harness: start a server as a real process, wait until it is SERVING, stop it.

One implementation for everything that runs the servers as processes: the tests
(``tests/procs.py`` re-exports it), the benchmarks (``bench/``) and the local
launcher's "stack ready" watch (``services/launcher.py``).

A server started by :func:`start_server` runs as ``python -m MODULE --port 0
--port-file F``: it binds a free port on 127.0.0.1 and writes the port to ``F``
once it listens; the harness reads it, then polls ``grpc.health.v1`` until the
server (or one named health service) says SERVING. Stopping is SIGTERM (the
servers shut down gracefully on it), then SIGKILL after a grace period.
Stdout and stderr go to a log file next to the port file, readable with
:meth:`ServerProcess.log`::

    server = start_server("services.vad.server", "vad", env={"VAD_BACKENDS": "silero"})
    try:
        ...  # talk to server.address
    finally:
        server.stop()
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import grpc
from grpc_health.v1 import health_pb2

from services.common.health import serving_status

__all__ = ["ROOT", "ServerProcess", "start_server", "wait_for_serving", "wait_until_serving", "stop_process",
           "free_port"]

ROOT = Path(__file__).resolve().parents[2]
"""Where ``services``, ``gateway`` and ``speech_analysis`` import from (the checkout, or
site-packages once installed); the servers run with it as their working directory."""

SERVING = health_pb2.HealthCheckResponse.SERVING
_POLL_S = 0.05
"""How often the port file and the health service are polled while a server starts."""


def stop_process(proc: subprocess.Popen, timeout_s: float = 15.0) -> int:
    """SIGTERM ``proc``, wait up to ``timeout_s`` for it to exit, then SIGKILL; its exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def wait_until_serving(address: str, service: str = "", deadline: float | None = None,
                       credentials: grpc.ChannelCredentials | None = None,
                       alive: Callable[[], bool] | None = None, poll_s: float = _POLL_S,
                       check_timeout_s: float = 2.0) -> bool:
    """Poll the health of ``service`` at ``address`` until it is SERVING: True.

    False as soon as ``alive()`` says the server's process is gone; TimeoutError once
    ``deadline`` (``time.monotonic()``) has passed; no deadline waits for ever. Between
    polls it waits ``poll_s``; an unreachable server counts as not serving yet."""
    while True:
        if alive is not None and not alive():
            return False
        try:
            if serving_status(address, service, check_timeout_s, credentials) == SERVING:
                return True
        except grpc.RpcError:
            pass
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"{address} never reported {service or 'the server'} SERVING")
        time.sleep(poll_s)


@dataclass
class ServerProcess:
    """A server started by :func:`start_server`: its process, port and log."""

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

    @property
    def _health_target(self) -> tuple[str, grpc.ChannelCredentials | None]:
        if self.tls_root_cert is None:
            return self.address, None
        return f"localhost:{self.port}", grpc.ssl_channel_credentials(self.tls_root_cert)

    def log(self) -> str:
        """Everything the process wrote to stdout and stderr so far."""
        return self.log_path.read_text(errors="replace")

    def health(self, timeout_s: float = 2.0, service: str = "") -> int:
        """The serving status; grpc.RpcError while the server is unreachable."""
        address, credentials = self._health_target
        return serving_status(address, service, timeout_s, credentials)

    def wait_serving(self, deadline: float, service: str = "") -> None:
        """Block until health says SERVING; RuntimeError (with the log) if the process exits
        first or ``deadline`` passes, and then the process is stopped."""
        address, credentials = self._health_target
        try:
            if wait_until_serving(address, service, deadline, credentials,
                                  alive=lambda: self.proc.poll() is None):
                return
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"{self.name} never reported SERVING:\n{self.log()}") from None
        raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()}")

    def stop(self, timeout_s: float = 15.0) -> int:
        """SIGTERM, then SIGKILL after ``timeout_s``; the exit status."""
        return stop_process(self.proc, timeout_s)


def start_server(module: str, name: str, args: Sequence[str] = (), env: dict | None = None,
                 wait_serving: bool = True, timeout_s: float = 120.0,
                 serving_service: str = "", tls_root_cert: bytes | None = None) -> ServerProcess:
    """Run ``python -m module --port 0 --port-file F *args``; wait for the port (and SERVING).

    ``env`` is added to this process's environment. ``serving_service``: the health name to
    wait for (e.g. ``"vad"`` for a gateway whose ASR worker is deliberately absent: its
    overall health then stays NOT_SERVING). ``args`` may name a fixed ``--port`` (the last
    one wins). RuntimeError with the server's log if it exits or times out first."""
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
    while not port_file.exists():  # written atomically once the server listens
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_process(proc, 5.0)
            raise RuntimeError(f"{name} did not start:\n{log_path.read_text(errors='replace')}")
        time.sleep(_POLL_S)
    server = ServerProcess(name, proc, int(port_file.read_text()), log_path, full_env, tls_root_cert)
    if wait_serving:
        server.wait_serving(deadline, serving_service)
    return server


def wait_for_serving(server: ServerProcess, deadline: float, service: str = "") -> None:
    """:meth:`ServerProcess.wait_serving` as a function (the tests' and benchmarks' spelling)."""
    server.wait_serving(deadline, service)


def free_port() -> int:
    """A currently free loopback port (for servers that must be told their port up front)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
