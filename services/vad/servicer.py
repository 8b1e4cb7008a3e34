"""gRPC VadService: converts protobuf <-> engine types; no model logic here."""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import AsyncIterator, Callable

import grpc

from speech_analysis.v1 import common_pb2
from speech_analysis.worker.v1 import vad_pb2, vad_pb2_grpc
from services.common.audio import SAMPLE_RATE_HZ, ms_to_samples, samples_from_f32le, samples_to_ms
from services.common.errors import InvalidInput, NotReady, Overloaded
from services.common.metrics import observe_model_compute
from services.vad.engine import SpeechEnded, SpeechStarted, VadEvent, VadOptions, VadStream

__all__ = ["VadServicer", "StreamFactory"]

log = logging.getLogger(__name__)

# backend name ("silero" | "fsmn"), options -> a fresh per-stream detector
StreamFactory = Callable[[str, VadOptions], VadStream]

_BACKENDS = {common_pb2.VAD_BACKEND_SILERO: "silero", common_pb2.VAD_BACKEND_FSMN: "fsmn"}
PROGRESS_INTERVAL_SAMPLES = ms_to_samples(250)
"""A Progress event goes out once at least this much more audio has been processed."""


def _event_to_proto(event: VadEvent) -> vad_pb2.StreamVadResponse:
    if isinstance(event, SpeechStarted):
        return vad_pb2.StreamVadResponse(speech_started=vad_pb2.SpeechStart(
            segment_id=event.segment_id, start_ms=event.start_ms))
    assert isinstance(event, SpeechEnded)
    return vad_pb2.StreamVadResponse(speech_ended=vad_pb2.SpeechEnd(
        segment_id=event.segment_id, start_ms=event.start_ms, end_ms=event.end_ms))


class VadServicer(vad_pb2_grpc.VadServiceServicer):
    def __init__(self, default_backend: str, defaults: VadOptions, max_streams: int, threads: int = 2):
        self.factory: StreamFactory | None = None  # set once models are loaded
        self.default_backend = default_backend
        self.defaults = defaults
        self.max_streams = max_streams
        self.active = 0
        # Each stream owns its state, so streams may run in parallel threads.
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="vad")

    def _options(self, config: common_pb2.VadConfig) -> VadOptions:
        return self.defaults.with_overrides(
            threshold=config.threshold,
            min_speech_duration_ms=config.min_speech_duration_ms,
            min_silence_duration_ms=config.min_silence_duration_ms,
            speech_pad_ms=config.speech_pad_ms,
            max_speech_duration_s=config.max_speech_duration_s,
        )

    async def StreamVad(self, request_iterator: AsyncIterator[vad_pb2.StreamVadRequest],
                        context: grpc.aio.ServicerContext) -> AsyncIterator[vad_pb2.StreamVadResponse]:
        # The config is read before any refusal: once the worker has read it, the client's
        # write of it has completed, so a refusal cannot race a write in flight (which would
        # end the call on the client's side as INTERNAL and hide the status sent here).
        first = await anext(aiter(request_iterator), None)
        if self.factory is None:
            raise NotReady("VAD model is still loading; retry when health reports SERVING")
        if self.active >= self.max_streams:
            raise Overloaded(f"VAD worker is at its limit of {self.max_streams} streams; retry later")
        self.active += 1
        loop = asyncio.get_running_loop()
        try:
            if first is None or first.WhichOneof("payload") != "config":
                raise InvalidInput("the first StreamVadRequest must carry a config")
            backend = _BACKENDS.get(first.config.backend, self.default_backend)
            stream = self.factory(backend, self._options(first.config))
            # Tells the client the stream is accepted: it sends audio only after this, so a
            # refusal above never races its writes (see gateway/session.py).
            await context.send_initial_metadata(())
            reported = 0  # samples processed as of the last Progress event
            async for request in request_iterator:
                if request.WhichOneof("payload") != "audio":
                    raise InvalidInput("only the first StreamVadRequest may carry a config")
                samples = samples_from_f32le(request.audio.samples_f32le)
                started = time.perf_counter()
                events = await loop.run_in_executor(self.executor, stream.accept, samples)
                observe_model_compute(f"vad-{backend}", time.perf_counter() - started,
                                      samples.size / SAMPLE_RATE_HZ)
                for event in events:
                    yield _event_to_proto(event)
                processed, keep_from = stream.progress()
                if processed - reported >= PROGRESS_INTERVAL_SAMPLES:
                    reported = processed
                    yield vad_pb2.StreamVadResponse(progress=vad_pb2.Progress(
                        processed_ms=samples_to_ms(processed), keep_from_ms=samples_to_ms(keep_from)))
            for event in await loop.run_in_executor(self.executor, stream.flush):
                yield _event_to_proto(event)
        finally:
            self.active -= 1
