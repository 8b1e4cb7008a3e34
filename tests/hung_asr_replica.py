"""A stand-in ASR replica for the retry test: ``python -m tests.hung_asr_replica``.

Answers short segments (< 1 s) at once with an empty transcript, so a client can
tell when its round_robin policy has connected to it; holds longer segments
without answering (no response headers, so the call stays retriable) until the
process is killed. Prints its port, then ``held`` for every call it holds.
"""

from __future__ import annotations

import asyncio

import grpc

from speech_analysis.worker.v1 import asr_pb2, asr_pb2_grpc


class HungAsr(asr_pb2_grpc.AsrServiceServicer):
    async def Transcribe(self, request, context):
        if len(request.audio.samples_f32le) < 4 * 16000:
            return asr_pb2.TranscribeResponse(text="")
        print("held", flush=True)
        await asyncio.Event().wait()


async def main() -> None:
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)])
    asr_pb2_grpc.add_AsrServiceServicer_to_server(HungAsr(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(port, flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(main())
