"""Optional bearer-token check for the public API (health and reflection stay open)."""

from __future__ import annotations

import hmac

import grpc

from services.common.metrics import AUTH_FAILURES

__all__ = ["BearerTokenInterceptor"]

_PROTECTED_PREFIX = "/speech_analysis.v1.SpeechAnalysisService/"


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    """Requires ``authorization: Bearer <token>`` metadata on SpeechAnalysisService calls."""

    def __init__(self, token: str):
        self._expected = f"Bearer {token}".encode()

    async def intercept_service(self, continuation, handler_call_details):
        if not handler_call_details.method.startswith(_PROTECTED_PREFIX):
            return await continuation(handler_call_details)
        metadata = dict(handler_call_details.invocation_metadata or ())
        supplied = metadata.get("authorization", "")
        if hmac.compare_digest(supplied.encode(), self._expected):
            return await continuation(handler_call_details)
        handler = await continuation(handler_call_details)
        AUTH_FAILURES.labels("grpc", "invalid" if supplied else "missing").inc()
        message = ("missing 'authorization: Bearer <token>' metadata" if not supplied
                   else "invalid bearer token")
        return _deny_like(handler, message)


def _deny_like(handler: grpc.RpcMethodHandler, message: str) -> grpc.RpcMethodHandler:
    """A handler of the same streaming shape as ``handler`` that aborts with UNAUTHENTICATED."""

    async def abort_unary(_request, context):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    async def abort_stream(_request, context):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)
        yield  # pragma: no cover - makes this an async generator

    kwargs = dict(request_deserializer=handler.request_deserializer,
                  response_serializer=handler.response_serializer)
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(abort_stream, **kwargs)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(abort_stream, **kwargs)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(abort_unary, **kwargs)
    return grpc.unary_unary_rpc_method_handler(abort_unary, **kwargs)
