"""Process scaffolding shared by every gRPC server (workers and gateway).

``create_server`` builds an asyncio gRPC server with the health service
(``NOT_SERVING`` until told otherwise) and server reflection, and binds it.
``run`` is what each ``server.py`` main calls: it starts the server, loads the
engine off the event loop, flips health to ``SERVING``, and stops gracefully
on SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Awaitable, Callable, Sequence

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.common.metrics import MODEL_LOAD_S, start_metrics_server
from services.common.settings import ServerSettings

__all__ = ["ServerHandle", "create_server", "run", "configure_logging", "channel_options"]

log = logging.getLogger(__name__)

UNARY_CONNECTION_GRACE_MS = 60_000
"""Grace for calls in flight on an aged connection of a unary server: longer than any
deadline the gateway gives a worker call (WORKER_TIMEOUT_S, default 30 s)."""


@dataclass
class ServerHandle:
    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    service_names: tuple[str, ...]

    async def set_serving(self, serving: bool) -> None:
        status = (health_pb2.HealthCheckResponse.SERVING if serving
                  else health_pb2.HealthCheckResponse.NOT_SERVING)
        for name in ("",) + self.service_names:
            await self.health.set(name, status)


def configure_logging(level: str, process: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format=f"%(asctime)s {process} %(levelname)s %(name)s: %(message)s")


def channel_options(max_message_bytes: int) -> list[tuple[str, int]]:
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
    ]


async def create_server(
    settings: ServerSettings,
    register: Callable[[grpc.aio.Server], None],
    service_names: Sequence[str],
    credentials: grpc.ServerCredentials | None = None,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    *,
    streaming: bool = False,
    max_receive_message_bytes: int | None = None,
) -> ServerHandle:
    """Build and bind (not start) a server; ``port`` is the real bound port.

    ``streaming``: the server's calls are long-lived streams that connection recycling
    must never cut. ``max_receive_message_bytes`` overrides the receive limit (the gateway
    accepts a margin above its own limits so it can refuse with INVALID_ARGUMENT and say why).
    """
    # Clients re-resolve DNS when a connection ages out, so new replicas get traffic. The
    # server then only refuses *new* calls on the old connection (GOAWAY); calls in flight
    # keep it open for up to the grace. Streaming servers set no grace (gRPC's default is
    # unlimited): their calls are long-lived sessions, bounded by their own limits
    # (MAX_SESSION_S, IDLE_TIMEOUT_S), and must never be cut by connection recycling.
    age = [("grpc.max_connection_age_ms", int(settings.max_connection_age_s * 1000))]
    if not streaming:
        age.append(("grpc.max_connection_age_grace_ms", UNARY_CONNECTION_GRACE_MS))
    options = dict(channel_options(settings.max_message_bytes) + age)  # gRPC takes the first of duplicates
    if max_receive_message_bytes is not None:
        options["grpc.max_receive_message_length"] = max_receive_message_bytes
    server = grpc.aio.server(options=list(options.items()), interceptors=list(interceptors))
    register(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        tuple(service_names) + (health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                                reflection.SERVICE_NAME), server)
    address = f"{settings.host}:{settings.port}"
    port = (server.add_secure_port(address, credentials) if credentials
            else server.add_insecure_port(address))
    if port == 0:
        raise RuntimeError(f"could not bind {address}")
    handle = ServerHandle(server, port, health_servicer, tuple(service_names))
    await handle.set_serving(False)
    return handle


async def run(
    settings: ServerSettings,
    process_name: str,
    register: Callable[[grpc.aio.Server], None],
    service_names: Sequence[str],
    load: Callable[[], Awaitable[None]] | None = None,
    credentials: grpc.ServerCredentials | None = None,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    on_stop: Callable[[], Awaitable[None]] | None = None,
    *,
    streaming: bool = False,
    max_receive_message_bytes: int | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT. Health is SERVING only after ``load`` finished."""
    handle = await create_server(settings, register, service_names, credentials, interceptors,
                                 streaming=streaming, max_receive_message_bytes=max_receive_message_bytes)
    await handle.server.start()
    start_metrics_server(settings.metrics_port, settings.host)
    log.info("%s listening on %s:%d (NOT_SERVING until loaded)", process_name, settings.host, handle.port)
    if settings.port_file:
        tmp = Path(settings.port_file + ".tmp")
        tmp.write_text(str(handle.port))
        tmp.replace(settings.port_file)  # atomic: readers never see a partial port

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    if load is not None:
        started = time.monotonic()
        load_task = asyncio.ensure_future(load())
        done, _ = await asyncio.wait({load_task, asyncio.ensure_future(stop.wait())},
                                     return_when=asyncio.FIRST_COMPLETED)
        if load_task in done:
            load_task.result()  # a failed load exits the process with its error
            MODEL_LOAD_S.labels(process_name).set(time.monotonic() - started)
            log.info("%s loaded in %.1f s", process_name, time.monotonic() - started)
        else:
            load_task.cancel()
    if not stop.is_set():
        await handle.set_serving(True)
        log.info("%s SERVING", process_name)
        await stop.wait()
    log.info("%s stopping (grace %.1f s)", process_name, settings.grace_s)
    await handle.set_serving(False)
    await handle.server.stop(settings.grace_s)
    if on_stop is not None:
        await on_stop()
    log.info("%s stopped", process_name)
