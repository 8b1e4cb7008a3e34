"""Asking a process's ``grpc.health.v1`` service how it is: the one client-side check.

Used by the container health check (scripts/health_check.py), the local launcher's
"stack ready" watch and the tests' process harness. Imports only grpc, so a check
costs about a tenth of a second of CPU.
"""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

__all__ = ["check", "serving_status"]


def serving_status(address: str, service: str = "", timeout_s: float = 3.0,
                   credentials: grpc.ChannelCredentials | None = None) -> int:
    """``HealthCheckResponse.ServingStatus`` of ``service`` at ``address`` (over TLS with
    ``credentials``); grpc.RpcError if unreachable."""
    channel = grpc.secure_channel(address, credentials) if credentials else grpc.insecure_channel(address)
    with channel:
        return health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=timeout_s).status


def check(address: str, service: str = "", timeout_s: float = 3.0) -> str:
    """The serving status name of ``service`` at ``address`` (``"SERVING"``, ...), or the RPC error code."""
    try:
        status = serving_status(address, service, timeout_s)
    except grpc.RpcError as error:
        return error.code().name
    return health_pb2.HealthCheckResponse.ServingStatus.Name(status)
