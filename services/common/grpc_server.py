"""Process scaffolding shared by every gRPC server (workers and gateway).

``create_server`` builds an asyncio gRPC server with the health service
(``NOT_SERVING`` until told otherwise), server reflection and the one
:class:`MetricsInterceptor` that counts every RPC by its final status code,
and binds it. ``run`` is what each ``server.py`` main calls: it starts the
server, loads the engine off the event loop, flips health to ``SERVING`` (or
hands health to a driver task, as the gateway does to follow its workers),
and on SIGTERM/SIGINT stops gracefully and exits the process.

Shutdown: health turns ``NOT_SERVING`` and open ``Health.Watch`` streams end
(so nothing is left to cancel with a traceback), in-flight calls get
``SHUTDOWN_GRACE_S``, then the process leaves with ``os._exit``: a model load
still running in a thread cannot be cancelled, and waiting for it (or for the
interpreter's teardown of a multi-GB heap) would outlast Kubernetes' grace period.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Awaitable, Callable, Sequence

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import FileDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.common.metrics import (
    ACTIVE_RPCS,
    MODEL_LOAD_S,
    RPC_LATENCY_S,
    RPCS,
    STREAM_DURATION_S,
    start_metrics_server,
)
from services.common import errors
from services.common.settings import ServerSettings

__all__ = [
    "ServerHandle",
    "HealthServicer",
    "MetricsInterceptor",
    "create_server",
    "run",
    "configure_logging",
    "channel_options",
    "deadline_of",
    "LIVENESS_SERVICE",
]

log = logging.getLogger(__name__)

UNARY_CONNECTION_GRACE_MS = 60_000
"""Grace for calls in flight on an aged connection of a unary server: longer than any
deadline the gateway gives a worker call (WORKER_TIMEOUT_S, default 30 s)."""

LIVENESS_SERVICE = "liveness"
"""Health name that is SERVING while the process runs (for liveness probes), whatever its
dependencies say; ``""`` and the service names are the readiness answer."""

_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


class HealthServicer(health_pb2_grpc.HealthServicer):
    """``grpc.health.v1.Health`` whose ``Watch`` streams end by themselves at shutdown.

    grpc_health's reference servicer keeps every Watch open until the server
    cancels it at the end of the grace period, which logs a ``CancelledError``
    traceback per stream. Here :meth:`shutdown` sends ``NOT_SERVING`` to every
    watcher and ends the streams with OK, so clients re-watch elsewhere.
    """

    def __init__(self) -> None:
        self._status: dict[str, int] = {}
        self._changed = asyncio.Condition()
        self._shutting_down = False

    def status(self, service: str = "") -> int:
        return self._status.get(service, _UNKNOWN)

    async def Check(self, request: health_pb2.HealthCheckRequest, context) -> health_pb2.HealthCheckResponse:
        status = self._status.get(request.service)
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(self, request: health_pb2.HealthCheckRequest, context) -> None:
        last = None
        async with self._changed:
            while True:
                status = self.status(request.service)
                if status != last:
                    await context.write(health_pb2.HealthCheckResponse(status=status))
                    last = status
                if self._shutting_down:
                    return
                await self._changed.wait()

    async def set(self, service: str, status: int) -> None:
        if self._shutting_down:
            return
        async with self._changed:
            self._status[service] = status
            self._changed.notify_all()

    async def shutdown(self) -> None:
        """Everything NOT_SERVING, for good; open Watch streams end."""
        async with self._changed:
            self._shutting_down = True
            for service in self._status:
                self._status[service] = _NOT_SERVING
            self._changed.notify_all()


@dataclass
class ServerHandle:
    server: grpc.aio.Server
    port: int
    health: HealthServicer
    service_names: tuple[str, ...]

    async def set_serving(self, serving: bool, names: Sequence[str] | None = None) -> None:
        """Readiness of ``names`` (default: ``""`` and every registered service)."""
        status = _SERVING if serving else _NOT_SERVING
        for name in ("",) + self.service_names if names is None else names:
            await self.health.set(name, status)


def deadline_of(context: grpc.aio.ServicerContext | None) -> float | None:
    """The caller's deadline as a ``time.monotonic()`` value; None when it set none."""
    remaining_s = context.time_remaining() if context is not None else None
    return None if remaining_s is None else time.monotonic() + remaining_s


def _status_name(code: object) -> str:
    if isinstance(code, grpc.StatusCode):
        return code.name
    if isinstance(code, int):
        for status in grpc.StatusCode:
            if status.value[0] == code:
                return status.name
    return "UNKNOWN"


def _rewrapped(handler: grpc.RpcMethodHandler, wrap: Callable) -> grpc.RpcMethodHandler:
    """``handler`` with its behaviour replaced by ``wrap(behaviour)`` (same kind, same serializers)."""
    kwargs = dict(request_deserializer=handler.request_deserializer,
                  response_serializer=handler.response_serializer)
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(wrap(handler.unary_unary), **kwargs)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(wrap(handler.unary_stream), **kwargs)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(wrap(handler.stream_unary), **kwargs)
    return grpc.stream_stream_rpc_method_handler(wrap(handler.stream_stream), **kwargs)


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """Counts every RPC once, by its final status code, and times it.

    Unary calls go to ``speech_rpc_latency_seconds``; calls that stream
    responses or requests (a whole Analyze session, a VAD stream, a health
    Watch) to ``speech_stream_duration_seconds``, so session lengths never
    mix with per-call latency. Registered first, so it also sees calls that a
    later interceptor (the bearer-token check) refuses.
    """

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        service, _, method = handler_call_details.method.lstrip("/").rpartition("/")
        streaming = handler.request_streaming or handler.response_streaming
        return _measured(handler, service or "unknown", method, streaming)


def _measured(handler: grpc.RpcMethodHandler, service: str, method: str, streaming: bool):
    histogram = STREAM_DURATION_S if streaming else RPC_LATENCY_S
    active = ACTIVE_RPCS.labels(service, method)

    def finish(started: float, code: str) -> None:
        active.dec()
        RPCS.labels(service, method, code).inc()
        histogram.labels(service, method, code).observe(time.monotonic() - started)

    def final_code(context, exc: BaseException | None) -> str:
        if isinstance(exc, asyncio.CancelledError):
            return "CANCELLED"
        code = context.code()
        if code is not None:
            return _status_name(code)
        return "OK" if exc is None else "UNKNOWN"

    def wrap(behavior):
        if inspect.isasyncgenfunction(behavior):
            async def gen(request, context):
                started, error = time.monotonic(), None
                active.inc()
                try:
                    async for item in behavior(request, context):
                        yield item
                except BaseException as exc:
                    error = exc
                    raise
                finally:
                    finish(started, final_code(context, error))
            return gen

        async def call(request, context):
            started, error = time.monotonic(), None
            active.inc()
            try:
                return await behavior(request, context)
            except BaseException as exc:
                error = exc
                raise
            finally:
                finish(started, final_code(context, error))
        return call

    return _rewrapped(handler, wrap)


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """The one boundary where exceptions become statuses (see services/common/errors.py).

    A :class:`~services.common.errors.ServiceError` aborts the call with its code and
    message; anything else is logged with its traceback and answered ``INTERNAL``
    without details. Registered last, right around the servicers.
    """

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        return _rewrapped(handler, functools.partial(_mapped, name=handler_call_details.method))


def _mapped(behavior, name: str):
    if inspect.isasyncgenfunction(behavior):
        async def gen(request, context):
            try:
                async for item in behavior(request, context):
                    yield item
            except (asyncio.CancelledError, grpc.aio.AbortError):
                raise
            except Exception as exc:  # noqa: BLE001 - this is the mapping boundary
                await context.abort(*errors.status_of_unexpected(name, exc))
        return gen

    async def call(request, context):
        try:
            return await behavior(request, context)
        except (asyncio.CancelledError, grpc.aio.AbortError):
            raise
        except Exception as exc:  # noqa: BLE001 - this is the mapping boundary
            await context.abort(*errors.status_of_unexpected(name, exc))
    return call


def public_descriptor_pool(files: Sequence[FileDescriptor]) -> descriptor_pool.DescriptorPool:
    """A pool holding ``files`` and their imports, with the services of the imports removed.

    Reflection on the gateway serves this pool, so a client can resolve the
    public API's messages and enums but learns nothing of the internal worker
    services that share proto files with it.
    """
    pool = descriptor_pool.DescriptorPool()
    added: set[str] = set()
    public = {f.name for f in files}

    def add(file: FileDescriptor) -> None:
        if file.name in added:
            return
        for dependency in file.dependencies:
            add(dependency)
        proto = descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(proto)
        if file.name not in public:
            del proto.service[:]
        pool.Add(proto)
        added.add(file.name)

    for file in files:
        add(file)
    return pool


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
    reflection_files: Sequence[FileDescriptor] | None = None,
    health_names: Sequence[str] = (),
    *,
    streaming: bool = False,
    max_receive_message_bytes: int | None = None,
) -> ServerHandle:
    """Build and bind (not start) a server; ``port`` is the real bound port.

    ``reflection_files``: reflection describes only these proto files (and the
    messages they import); default: every proto this process has loaded.
    ``health_names``: further health names, NOT_SERVING until set (e.g. the gateway's parts).
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
    # gRPC sets SO_REUSEPORT by default: a second server on a busy port (a stale process, a
    # mistyped port) would then start quietly and the kernel would split connections between
    # the two. Binding must fail instead.
    options["grpc.so_reuseport"] = 0
    server = grpc.aio.server(options=list(options.items()),
                             interceptors=[MetricsInterceptor(), *interceptors, ErrorInterceptor()])
    register(server)
    health_servicer = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    pool = None
    if reflection_files is not None:
        from grpc_reflection.v1alpha import reflection_pb2

        pool = public_descriptor_pool([*reflection_files, health_pb2.DESCRIPTOR, reflection_pb2.DESCRIPTOR])
    reflection.enable_server_reflection(
        tuple(service_names) + (health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                                reflection.SERVICE_NAME), server, pool=pool)
    address = f"{settings.host}:{settings.port}"
    try:
        port = (server.add_secure_port(address, credentials) if credentials
                else server.add_insecure_port(address))
    except RuntimeError:  # gRPC >= 1.5x raises instead of returning 0
        port = 0
    if port == 0:
        raise RuntimeError(f"could not bind {address}: is another process listening there?")
    handle = ServerHandle(server, port, health_servicer, tuple(service_names))
    await handle.set_serving(False)
    await handle.set_serving(False, health_names)
    await health_servicer.set(LIVENESS_SERVICE, _SERVING)
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
    health_driver: Callable[[ServerHandle], Awaitable[None]] | None = None,
    reflection_files: Sequence[FileDescriptor] | None = None,
    health_names: Sequence[str] = (),
    exit_process: bool = True,
    streaming: bool = False,
    max_receive_message_bytes: int | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT, then exit the process (``exit_process``).

    Health is SERVING only after ``load`` finished; with ``health_driver``
    that task owns the readiness status instead (it runs until shutdown).
    """
    handle = await create_server(settings, register, service_names, credentials, interceptors,
                                 reflection_files, health_names, streaming=streaming,
                                 max_receive_message_bytes=max_receive_message_bytes)
    await handle.server.start()
    start_metrics_server(settings.metrics_port, settings.host)
    log.info("%s listening on %s:%d (NOT_SERVING until ready)", process_name, settings.host, handle.port)
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
        stop_task = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait({load_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
        if load_task in done:
            stop_task.cancel()
            load_task.result()  # a failed load exits the process with its error
            MODEL_LOAD_S.labels(process_name).set(time.monotonic() - started)
            log.info("%s loaded in %.1f s", process_name, time.monotonic() - started)
        else:
            # The load runs in a thread that cannot be cancelled: it is abandoned, and
            # os._exit below ends the process without waiting for it.
            load_task.cancel()
            log.info("%s: stop requested while loading; abandoning the load", process_name)
    driver = None
    if not stop.is_set():
        if health_driver is not None:
            driver = asyncio.create_task(health_driver(handle), name=f"{process_name}-health")
        else:
            await handle.set_serving(True)
            log.info("%s SERVING", process_name)
        await stop.wait()
    log.info("%s stopping (grace %.1f s)", process_name, settings.grace_s)
    if driver is not None:
        driver.cancel()
    await handle.health.shutdown()  # NOT_SERVING everywhere; Watch streams end cleanly
    await handle.server.stop(settings.grace_s)
    if on_stop is not None:
        try:
            await asyncio.wait_for(on_stop(), timeout=2.0)
        except Exception:  # noqa: BLE001 - shutting down anyway
            log.exception("%s: cleanup failed", process_name)
    log.info("%s stopped", process_name)
    if exit_process:
        _exit_now(0)


def _exit_now(code: int) -> None:
    """Leave without joining worker threads (a model load cannot be interrupted) or tearing
    down a large heap object by object; flush what would otherwise be lost."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001
            pass
    os._exit(code)
