"""gRPC SpeakerService: converts protobuf <-> engine types; no model logic here.

Every Embed call goes through one :class:`~services.common.batching.BatchWorker`
(bounded queue -> ``RESOURCE_EXHAUSTED``, the caller's deadline, one model
thread), which hands concurrent segments to ``SpeakerEngine.embed_batch``
together. Bad audio is refused before it is queued. The engine is built by
:meth:`SpeakerServicer.load`, which the server awaits before reporting SERVING.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

import grpc

from speech_analysis.worker.v1 import audio_pb2, speaker_pb2, speaker_pb2_grpc
from services.common.audio import SAMPLE_RATE_HZ, check_segment, samples_from_f32le
from services.common.batching import BatchOptions, BatchWorker
from services.common.errors import NotReady
from services.speaker.engine import SpeakerEmbedding, SpeakerEngine, SpeakerOptions

__all__ = ["SpeakerServicer", "result_to_proto"]

log = logging.getLogger(__name__)


def result_to_proto(result: SpeakerEmbedding, model_info: audio_pb2.ModelInfo) -> speaker_pb2.EmbedResponse:
    return speaker_pb2.EmbedResponse(embedding=result.embedding.tolist(), audio_ms=result.audio_ms,
                                     model_info=model_info, compute_ms=result.compute_ms)


class SpeakerServicer(speaker_pb2_grpc.SpeakerServiceServicer):
    def __init__(self, build_engine: Callable[[], SpeakerEngine], options: SpeakerOptions,
                 batch: BatchOptions, model_names: list[str], random_weights: bool):
        self._build_engine = build_engine  # blocking; runs on the model thread
        self.options = options
        self.engine: SpeakerEngine | None = None
        model = model_names[0] if model_names else "speaker"
        # Metrics count the audio actually embedded (a long segment's middle), not what was sent.
        self.worker: BatchWorker = BatchWorker(
            "speaker", self._embed_batch, batch,
            measure=lambda samples: (model, min(samples.size, options.max_audio_samples) / SAMPLE_RATE_HZ))
        self.model_info = audio_pb2.ModelInfo(models=model_names, random_weights=random_weights)

    def _embed_batch(self, segments):
        assert self.engine is not None  # Embed is only served after load()
        return self.engine.embed_batch(segments)

    async def load(self) -> SpeakerEngine:
        """Build (load and warm up) the engine on the model thread."""
        started = time.monotonic()
        log.info("loading speaker model")
        self.engine = await self.worker.run_exclusive(self._build_engine)
        log.info("speaker model ready in %.1f s", time.monotonic() - started)
        return self.engine

    async def stop(self) -> None:
        await self.worker.stop()

    async def Embed(self, request: speaker_pb2.EmbedRequest,
                    context: grpc.aio.ServicerContext) -> speaker_pb2.EmbedResponse:
        samples = samples_from_f32le(request.audio.samples_f32le)
        check_segment(samples, self.options.min_segment_samples)  # refused before it takes a place in the queue
        if self.engine is None:  # health says NOT_SERVING until then; a client that ignores it
            raise NotReady("speaker model is still loading; wait for health SERVING")
        remaining_s = context.time_remaining()
        deadline_s = time.monotonic() + remaining_s if remaining_s is not None else None
        result = await self.worker.submit(samples, deadline_s)
        return result_to_proto(result, self.model_info)
