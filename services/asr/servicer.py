"""gRPC AsrService: converts protobuf <-> engine types; no model logic here.

Every Transcribe call is validated here (audio decoding, mode, hotwords,
language), then queued on the :class:`~services.common.batching.BatchWorker`
that owns the model thread, with the caller's deadline so an expired or
cancelled call never reaches the model.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Sequence

import grpc

from speech_analysis.v1 import common_pb2
from speech_analysis.worker.v1 import asr_pb2, asr_pb2_grpc, audio_pb2
from services.asr.engine import AsrEngine
from services.asr.requests import PARAFORMER, AsrRequest, Transcript, normalise_language
from services.common.audio import SAMPLE_RATE_HZ, samples_from_f32le
from services.common.batching import BatchOptions, BatchWorker
from services.common.errors import InvalidInput, NotReady
from services.common.grpc_server import deadline_of
from services.common.limits import normalise_hotwords
from services.common.modes import mode_name, mode_value

__all__ = ["AsrServicer"]

log = logging.getLogger(__name__)



def _response(result: Transcript, segment_start_ms: int, models: Sequence[str],
              random_weights: bool) -> asr_pb2.TranscribeResponse:
    response = asr_pb2.TranscribeResponse(
        text=result.text,
        mode=mode_value(result.mode),
        model_info=audio_pb2.ModelInfo(models=list(models), random_weights=random_weights),
        compute_ms=result.compute_ms,
    )
    for token in result.tokens:
        response.timestamps.add(
            token=token.token, start_ms=token.start_ms, end_ms=token.end_ms,
            stream_start_ms=segment_start_ms + token.start_ms,
            stream_end_ms=segment_start_ms + token.end_ms)
    if result.language is not None:
        response.language = result.language.code
        response.language_display_name = result.language.display_name
    if result.emotion is not None:
        # The tag carries no probability; 1.0 says "the model's single answer".
        response.emotion.CopyFrom(common_pb2.EmotionScore(
            label=result.emotion.code, display_name=result.emotion.display_name, probability=1.0))
    if result.event is not None:
        response.audio_event = result.event.code
        response.audio_event_display_name = result.event.display_name
    return response


class AsrServicer(asr_pb2_grpc.AsrServiceServicer):
    """Transcribe: validate, queue on the batch worker, convert the result."""

    def __init__(self, batch_options: BatchOptions):
        self.engine: AsrEngine | None = None  # set once models are loaded and warm
        # The one model thread: loading and warm-up run on it too (run_exclusive).
        self.batcher: BatchWorker[AsrRequest, Transcript] = BatchWorker(
            "asr", self._process_batch, batch_options, key=AsrRequest.batch_key,
            measure=lambda item: (item.mode, item.samples.size / SAMPLE_RATE_HZ))

    def _process_batch(self, requests: list[AsrRequest]) -> list[Transcript | Exception]:
        assert self.engine is not None
        return self.engine.transcribe_batch(requests)

    def _request(self, engine: AsrEngine, request: asr_pb2.TranscribeRequest) -> AsrRequest:
        if request.mode == common_pb2.ASR_MODE_UNSPECIFIED:
            mode = engine.check_mode(None)
        else:
            try:
                mode = engine.check_mode(mode_name(request.mode))
            except ValueError:
                raise InvalidInput(f"unknown ASR mode {request.mode}") from None
        samples = samples_from_f32le(request.audio.samples_f32le)
        if samples.size == 0:
            raise InvalidInput("empty segment: audio.samples_f32le holds no samples")
        if mode == PARAFORMER:
            return AsrRequest(samples, mode=mode, hotwords=normalise_hotwords(request.hotwords))
        return AsrRequest(samples, mode=mode, language=normalise_language(request.language),
                          use_itn=request.use_itn)

    async def Transcribe(self, request: asr_pb2.TranscribeRequest,
                         context: grpc.aio.ServicerContext) -> asr_pb2.TranscribeResponse:
        started = time.monotonic()
        engine = self.engine
        if engine is None:
            raise NotReady("ASR models are still loading; retry when health reports SERVING")
        # Decoding and validation are linear in the (bounded) request size: off the event loop.
        item = await asyncio.to_thread(self._request, engine, request)
        result = await self.batcher.submit(item, deadline_s=deadline_of(context))
        elapsed_s = time.monotonic() - started
        log.info("Transcribe %s %.2f s at %d ms: %d chars, %d pieces, model %.0f ms, total %.0f ms",
                 result.mode, item.samples.size / SAMPLE_RATE_HZ, request.segment_start_ms,
                 len(result.text), result.pieces, result.compute_ms, elapsed_s * 1000)
        return _response(result, request.segment_start_ms, engine.model_names(result.mode),
                         engine.random_weights)
