"""Real server processes for the tests: the process harness, under the names the tests import,
and a reader of a process's Prometheus metrics.

Every server binds 127.0.0.1 port 0 and writes the port it got to a file;
:func:`start_server` reads it, then polls ``grpc.health.v1`` until SERVING. The
implementation is :mod:`services.common.processes`, shared with the benchmarks and
the launcher.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import signal
import time
import urllib.request
from typing import Callable, Iterator

import grpc

from services.common.processes import ROOT, ServerProcess, free_port, start_server, stop_process, wait_for_serving

__all__ = ["ROOT", "ServerProcess", "free_port", "start_server", "stop_process", "wait_for_serving", "scrape",
           "sample", "wait_for_metric", "status_codes_of_concurrent", "serving", "server_group"]


def scrape(port: int) -> dict[str, float]:
    """The /metrics samples on ``port`` as {'name{labels}': value}."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            samples[key] = float(value)
    return samples


def sample(samples: dict[str, float], name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels`` (0 when there are none)."""
    total = 0.0
    for key, value in samples.items():
        if key == name or key.startswith(name + "{"):
            if all(f'{k}="{v}"' in key for k, v in labels.items()):
                total += value
    return total


def wait_for_metric(port: int, name: str, value: float, timeout_s: float = 10, **labels: str) -> None:
    """Poll /metrics on ``port`` until :func:`sample` of ``name`` with ``labels`` is ``value``."""
    deadline = time.monotonic() + timeout_s
    while (current := sample(scrape(port), name, **labels)) != value:
        assert time.monotonic() < deadline, f"{name}{labels} is {current}, never {value}"
        time.sleep(0.02)


def status_codes_of_concurrent(call: Callable[[], object], count: int) -> list[grpc.StatusCode]:
    """The status code of each of ``count`` concurrent ``call()``s (OK for those that returned)."""
    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        futures = [pool.submit(call) for _ in range(count)]
        codes = []
        for future in futures:
            try:
                future.result()
                codes.append(grpc.StatusCode.OK)
            except grpc.RpcError as exc:
                codes.append(exc.code())
    return codes


def serving(server: ServerProcess, timeout_s: float = 120) -> ServerProcess:
    """``server`` once its health says SERVING (for servers started without waiting)."""
    wait_for_serving(server, time.monotonic() + timeout_s)
    return server


@contextlib.contextmanager
def server_group(module: str, prefix: str, env: dict[str, str],
                 variants: dict[str, dict[str, str]]) -> Iterator[dict[str, ServerProcess]]:
    """One ``module`` process per variant (``env`` plus the variant's), started in parallel
    without waiting for SERVING (tests wait with :func:`serving`), each with its metrics on
    ``server.metrics_port``; all stopped at the end, SIGTERMed together so they shut down
    in parallel."""
    metrics_ports = {name: free_port() for name in variants}
    with concurrent.futures.ThreadPoolExecutor(len(variants)) as pool:
        futures = {name: pool.submit(start_server, module, f"{prefix}-{name}",
                                     env={**env, **extra, "METRICS_PORT": str(metrics_ports[name])},
                                     wait_serving=False)
                   for name, extra in variants.items()}
        concurrent.futures.wait(futures.values())
    servers = {name: future.result() for name, future in futures.items() if future.exception() is None}
    for name, server in servers.items():
        server.metrics_port = metrics_ports[name]
    try:
        failed = [future.exception() for future in futures.values() if future.exception() is not None]
        if failed:
            raise failed[0]
        yield servers
    finally:
        for server in servers.values():
            if server.proc.poll() is None:
                server.proc.send_signal(signal.SIGTERM)
        for server in servers.values():
            server.stop()
