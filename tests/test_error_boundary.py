"""The error boundary every server gets from create_server (ErrorInterceptor).

The servicers here are test doubles that raise on purpose: the unit under test is the
server scaffold (a real grpc.aio server on 127.0.0.1, real clients), whose
interceptor turns domain errors into their status and anything else into a bare
INTERNAL, for unary and streaming methods alike.
"""

from __future__ import annotations

import asyncio

import grpc
import pytest
from prometheus_client import REGISTRY

from speech_analysis.worker.v1 import emotion_pb2, emotion_pb2_grpc, vad_pb2, vad_pb2_grpc
from services.common import grpc_server
from services.common.errors import InvalidInput, Overloaded
from services.common.settings import ServerSettings


class Raising(emotion_pb2_grpc.EmotionServiceServicer, vad_pb2_grpc.VadServiceServicer):
    def __init__(self, exc: BaseException):
        self.exc = exc

    async def Classify(self, request, context):
        raise self.exc

    async def StreamVad(self, request_iterator, context):
        async for _ in request_iterator:
            yield vad_pb2.StreamVadResponse()
            raise self.exc


@pytest.mark.parametrize("exc, code, details", [
    (InvalidInput("config.x must be 1"), grpc.StatusCode.INVALID_ARGUMENT, "config.x must be 1"),
    (Overloaded("queue full; retry later"), grpc.StatusCode.RESOURCE_EXHAUSTED, "queue full; retry later"),
    (RuntimeError("secret internals /etc/passwd"), grpc.StatusCode.INTERNAL,
     "internal error (RuntimeError); see server log"),
], ids=["domain error", "overload", "bug"])
def test_exceptions_become_statuses_for_unary_and_streaming_calls(exc, code, details):
    async def scenario():
        servicer = Raising(exc)

        def register(server):
            emotion_pb2_grpc.add_EmotionServiceServicer_to_server(servicer, server)
            vad_pb2_grpc.add_VadServiceServicer_to_server(servicer, server)

        handle = await grpc_server.create_server(ServerSettings(port=0), register, service_names=[])
        await handle.server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{handle.port}") as channel:
                with pytest.raises(grpc.aio.AioRpcError) as unary:
                    await emotion_pb2_grpc.EmotionServiceStub(channel).Classify(emotion_pb2.ClassifyRequest())
                call = vad_pb2_grpc.VadServiceStub(channel).StreamVad()
                await call.write(vad_pb2.StreamVadRequest())
                with pytest.raises(grpc.aio.AioRpcError) as streamed:
                    async for _ in call:
                        pass
        finally:
            await handle.server.stop(None)
        return unary.value, streamed.value

    labels = {"service": "speech_analysis.worker.v1.EmotionService", "method": "Classify", "code": code.name}
    before = REGISTRY.get_sample_value("speech_rpcs_total", labels) or 0.0
    for error in asyncio.run(scenario()):
        assert (error.code(), error.details()) == (code, details)
    # The metrics interceptor (outside the error boundary) counted the mapped status.
    assert REGISTRY.get_sample_value("speech_rpcs_total", labels) == before + 1
