"""gRPC SpeechAnalysis service: validates requests and hands audio to a Session."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import AsyncIterator

import grpc
import numpy as np

from protos.v1 import audio_pb2, gateway_pb2, gateway_pb2_grpc
from services.common.errors import InvalidInput, Overloaded, grpc_errors
from services.common.metrics import ACTIVE_STREAMS, REQUEST_LATENCY_S, REQUESTS
from gateway.audio_input import AudioConverter, decode_file, validate_config
from gateway.session import Session, SessionLimits
from gateway.workers import Workers

__all__ = ["SpeechAnalysisServicer"]

log = logging.getLogger(__name__)

_FILE_CHUNK_S = 0.5  # AnalyzeFile feeds the decoded file through the streaming path in chunks


class SpeechAnalysisServicer(gateway_pb2_grpc.SpeechAnalysisServicer):
    def __init__(self, workers: Workers, limits: SessionLimits, max_sessions: int):
        self.workers = workers
        self.limits = limits
        self.max_sessions = max_sessions
        self.active = 0

    @contextlib.contextmanager
    def _slot(self, method: str):
        if self.active >= self.max_sessions:
            REQUESTS.labels("gateway", method, "RESOURCE_EXHAUSTED").inc()
            raise Overloaded(f"the gateway is at its limit of {self.max_sessions} concurrent sessions; "
                             "retry later")
        self.active += 1
        ACTIVE_STREAMS.labels("gateway").inc()
        started = time.monotonic()
        try:
            yield
        finally:
            self.active -= 1
            ACTIVE_STREAMS.labels("gateway").dec()
            REQUEST_LATENCY_S.labels("gateway", method).observe(time.monotonic() - started)

    def _session(self, config: gateway_pb2.StreamConfig, context: grpc.aio.ServicerContext | None) -> Session:
        remaining = context.time_remaining() if context is not None else None
        deadline = time.monotonic() + remaining if remaining is not None else None
        session = Session(uuid.uuid4().hex[:12], config, self.workers, self.limits, deadline)
        session.log.info("started (mode %s, %d Hz, %s)", config.mode,
                         config.sample_rate_hz, audio_pb2.AudioEncoding.Name(config.encoding)
                         if config.encoding in audio_pb2.AudioEncoding.values() else config.encoding)
        return session

    async def stream_session(self, config: gateway_pb2.StreamConfig, chunks: AsyncIterator[bytes],
                             context: grpc.aio.ServicerContext | None = None,
                             method: str = "Analyze") -> AsyncIterator[gateway_pb2.AnalyzeEvent]:
        """The streaming path shared by gRPC ``Analyze`` and the WebSocket bridge."""
        with self._slot(method):
            validate_config(config)
            converter = AudioConverter(config.sample_rate_hz, config.encoding, config.channels)
            session = self._session(config, context)

            async def client_audio() -> AsyncIterator[np.ndarray]:
                async for data in chunks:
                    samples = converter.convert(data)
                    if samples.size:
                        yield samples
                tail = converter.finish()
                if tail.size:
                    yield tail

            async for event in session.events(client_audio()):
                yield event
            session.log.info(session.finished_line())
            REQUESTS.labels("gateway", method, "OK").inc()

    @grpc_errors
    async def Analyze(self, request_iterator: AsyncIterator[gateway_pb2.AnalyzeRequest],
                      context: grpc.aio.ServicerContext) -> AsyncIterator[gateway_pb2.AnalyzeEvent]:
        first = await anext(aiter(request_iterator), None)
        if first is None:
            raise InvalidInput("empty stream: the first AnalyzeRequest must carry a StreamConfig")
        if first.WhichOneof("payload") != "config":
            raise InvalidInput("the first AnalyzeRequest must carry a StreamConfig, not audio")

        async def chunks() -> AsyncIterator[bytes]:
            async for request in request_iterator:
                if request.WhichOneof("payload") != "audio":
                    raise InvalidInput("only the first AnalyzeRequest may carry a StreamConfig")
                yield request.audio

        async for event in self.stream_session(first.config, chunks(), context):
            yield event

    @grpc_errors
    async def AnalyzeFile(self, request: gateway_pb2.AnalyzeFileRequest,
                          context: grpc.aio.ServicerContext) -> gateway_pb2.AnalyzeFileResponse:
        with self._slot("AnalyzeFile"):
            validate_config(request.config, audio_format_required=False)
            frames, rate, _channels = await asyncio.to_thread(decode_file, request.content)
            mono = frames.mean(axis=1, dtype=np.float32) if frames.shape[1] > 1 else frames[:, 0]
            if mono.size / rate > self.limits.max_session_s:
                raise Overloaded(f"file is {mono.size / rate:.0f} s long; the limit is "
                                 f"{self.limits.max_session_s:.0f} s per session")
            converter = AudioConverter(rate, audio_pb2.FLOAT32LE, 1)
            config = gateway_pb2.StreamConfig()
            config.CopyFrom(request.config)
            config.sample_rate_hz, config.encoding, config.channels = rate, audio_pb2.FLOAT32LE, 1
            session = self._session(config, context)
            step = max(int(rate * _FILE_CHUNK_S), 1)

            async def file_audio() -> AsyncIterator[np.ndarray]:
                for start in range(0, mono.size, step):
                    yield converter.convert(mono[start:start + step].astype("<f4").tobytes())
                tail = converter.finish()
                if tail.size:
                    yield tail

            events = [event async for event in session.events(file_audio())]
            session.log.info(session.finished_line())
            REQUESTS.labels("gateway", "AnalyzeFile", "OK").inc()
            return gateway_pb2.AnalyzeFileResponse(events=events)
