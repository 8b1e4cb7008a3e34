"""Domain errors and the one place that maps them to gRPC status codes.

Engines raise the exceptions below (they never import grpc). Servicer methods
are wrapped with :func:`grpc_errors`, which aborts the call with the matching
status and the exception's message. Anything else is logged with its
traceback and answered with ``INTERNAL`` so a bug never leaks a stack trace to
clients nor kills the server.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from typing import Any, Callable

import grpc

__all__ = [
    "ServiceError",
    "InvalidInput",
    "Overloaded",
    "WrongMode",
    "NotEnabled",
    "OutOfRange",
    "NotReady",
    "Unauthenticated",
    "DeadlineExceeded",
    "grpc_errors",
    "status_for",
    "worker_error",
]

log = logging.getLogger(__name__)


class ServiceError(Exception):
    """Base class: an error a client can act on."""

    code = grpc.StatusCode.INTERNAL


class InvalidInput(ServiceError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class Overloaded(ServiceError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class WrongMode(ServiceError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class NotEnabled(ServiceError):
    """The request asks for a feature this deployment has switched off (a setting)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class OutOfRange(ServiceError):
    """A stream went past a limit it can never exceed (length, idle time); not worth retrying."""

    code = grpc.StatusCode.OUT_OF_RANGE


class NotReady(ServiceError):
    code = grpc.StatusCode.UNAVAILABLE


class Unauthenticated(ServiceError):
    code = grpc.StatusCode.UNAUTHENTICATED


class DeadlineExceeded(ServiceError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


def worker_error(part: str, exc: grpc.aio.AioRpcError) -> ServiceError:
    """A downstream worker's failure, passed on with its status code and named part."""
    error = ServiceError(f"{part} worker: {exc.details()}")
    error.code = exc.code()
    return error


MAX_DETAILS_CHARS = 1000
"""Status messages are cut to this length (gRPC carries them in a size-limited header)."""


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and message a client should see for ``exc``."""
    if isinstance(exc, ServiceError):
        message = str(exc)
        if len(message) > MAX_DETAILS_CHARS:
            message = message[: MAX_DETAILS_CHARS - 3] + "..."
        return exc.code, message
    return grpc.StatusCode.INTERNAL, f"internal error ({type(exc).__name__}); see server log"


def _log_unexpected(method: str, exc: BaseException) -> None:
    if not isinstance(exc, ServiceError):
        log.error("unexpected error in %s", method, exc_info=exc)


def grpc_errors(method: Callable) -> Callable:
    """Wrap an async servicer method (unary or streaming) so domain errors become statuses."""
    name = method.__qualname__

    if inspect.isasyncgenfunction(method):
        @functools.wraps(method)
        async def stream_wrapper(self, request: Any, context: grpc.aio.ServicerContext):
            try:
                async for item in method(self, request, context):
                    yield item
            except (asyncio.CancelledError, grpc.aio.AbortError):
                raise
            except Exception as exc:  # noqa: BLE001 - this is the mapping boundary
                _log_unexpected(name, exc)
                code, message = status_for(exc)
                await context.abort(code, message)
        return stream_wrapper

    @functools.wraps(method)
    async def unary_wrapper(self, request: Any, context: grpc.aio.ServicerContext):
        try:
            return await method(self, request, context)
        except (asyncio.CancelledError, grpc.aio.AbortError):
            raise
        except Exception as exc:  # noqa: BLE001 - this is the mapping boundary
            _log_unexpected(name, exc)
            code, message = status_for(exc)
            await context.abort(code, message)
    return unary_wrapper
