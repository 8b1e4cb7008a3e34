"""gRPC SpeakerService: converts protobuf <-> engine types; no model logic here.

Every Embed call goes through one :class:`~services.common.batching.BatchWorker`
(bounded queue -> ``RESOURCE_EXHAUSTED``, the caller's deadline, one model
thread), which hands concurrent segments to ``SpeakerEngine.embed_batch``
together. Bad audio is refused before it is queued. The engine is built once
(:class:`~services.common.batching.BatchedModel`), by the server before it
reports SERVING.
"""

from __future__ import annotations

import logging
from typing import Callable

import grpc
import numpy as np

from speech_analysis.worker.v1 import audio_pb2, speaker_pb2, speaker_pb2_grpc
from services.common.audio import SAMPLE_RATE_HZ, check_segment, samples_from_f32le
from services.common.batching import BatchedModel, BatchOptions
from services.common.grpc_server import deadline_of
from services.speaker.engine import SpeakerEmbedding, SpeakerEngine, SpeakerOptions

__all__ = ["SpeakerServicer", "result_to_proto"]

log = logging.getLogger(__name__)


def result_to_proto(result: SpeakerEmbedding, model_info: audio_pb2.ModelInfo) -> speaker_pb2.EmbedResponse:
    return speaker_pb2.EmbedResponse(embedding=result.embedding.tolist(), audio_ms=result.audio_ms,
                                     model_info=model_info, compute_ms=result.compute_ms)


class SpeakerServicer(speaker_pb2_grpc.SpeakerServiceServicer):
    def __init__(self, build_engine: Callable[[], SpeakerEngine], options: SpeakerOptions,
                 batch: BatchOptions, model_names: list[str], random_weights: bool):
        self.options = options
        model = model_names[0] if model_names else "speaker"
        # Metrics count the audio actually embedded (a long segment's middle), not what was sent.
        self.model: BatchedModel[SpeakerEngine, np.ndarray, SpeakerEmbedding] = BatchedModel(
            "speaker", build_engine, SpeakerEngine.embed_batch, batch,
            measure=lambda samples: (model, min(samples.size, options.max_audio_samples) / SAMPLE_RATE_HZ))
        self.model_info = audio_pb2.ModelInfo(models=model_names, random_weights=random_weights)

    async def load(self) -> SpeakerEngine:
        return await self.model.load()

    async def stop(self) -> None:
        await self.model.stop()

    async def Embed(self, request: speaker_pb2.EmbedRequest,
                    context: grpc.aio.ServicerContext) -> speaker_pb2.EmbedResponse:
        samples = samples_from_f32le(request.audio.samples_f32le)
        check_segment(samples, self.options.min_segment_samples)  # refused before it takes a place in the queue
        result = await self.model.submit(samples, deadline_of(context))
        return result_to_proto(result, self.model_info)
