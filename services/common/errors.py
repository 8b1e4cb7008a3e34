"""Domain errors and the one place that maps them to gRPC status codes.

Engines raise the exceptions below (they never import grpc). Every server's
``ErrorInterceptor`` (services/common/grpc_server.py, registered by
``create_server``) aborts a call that raised one with the matching status and
the exception's message (:func:`status_for`). Anything else is logged with its
traceback and answered with ``INTERNAL`` (:func:`status_of_unexpected`) so a bug
never leaks a stack trace to clients nor kills the server.
"""

from __future__ import annotations

import logging

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
    "status_of_unexpected",
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


def status_of_unexpected(method: str, exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """:func:`status_for`, logging ``exc`` with its traceback first unless it is a ServiceError."""
    if not isinstance(exc, ServiceError):
        log.error("unexpected error in %s", method, exc_info=exc)
    return status_for(exc)
