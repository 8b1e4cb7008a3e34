"""A stand-in ASR replica: ``python -m tests.hung_asr_replica``.

Answers short segments (< 1 s) at once with an empty transcript, so a client can
tell when its round_robin policy has connected to it; holds longer segments
without answering (no response headers, so the call stays retriable) until the
process is killed or the caller cancels. Prints its port, then ``held`` for every
call it holds and ``cancelled`` when a held call is cancelled by its caller. Its
health service says SERVING, so a gateway can use it as its only ASR worker.
"""

from __future__ import annotations

import asyncio

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from speech_analysis.worker.v1 import asr_pb2, asr_pb2_grpc


class HungAsr(asr_pb2_grpc.AsrServiceServicer):
    async def Transcribe(self, request, context):
        if len(request.audio.samples_f32le) < 4 * 16000:
            return asr_pb2.TranscribeResponse(text="")
        print("held", flush=True)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            print("cancelled", flush=True)
            raise


async def main() -> None:
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)])
    asr_pb2_grpc.add_AsrServiceServicer_to_server(HungAsr(), server)
    health_servicer = health.aio.HealthServicer()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(port, flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(main())
