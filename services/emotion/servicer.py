"""gRPC EmotionService: converts protobuf <-> engine types; no model logic here.

Every Classify call goes through one :class:`~services.common.batching.BatchWorker`
(bounded queue -> ``RESOURCE_EXHAUSTED``, the caller's deadline, one model
thread), which hands concurrent segments to ``EmotionEngine.classify_batch``
together.

The engine is built once (:class:`~services.common.batching.BatchedModel`): the
server loads it before reporting SERVING, or, with lazy loading, the first
request does; concurrent first requests share one load, and a failed lazy load
is reported to the requests that waited for it and retried by the next one.
"""

from __future__ import annotations

import logging
from typing import Callable

import grpc
import numpy as np

from speech_analysis.v1 import common_pb2
from speech_analysis.worker.v1 import audio_pb2, emotion_pb2, emotion_pb2_grpc
from services.common.audio import SAMPLE_RATE_HZ, check_segment, samples_from_f32le
from services.common.batching import BatchedModel, BatchOptions
from services.common.grpc_server import deadline_of
from services.emotion.engine import EmotionEngine, EmotionOptions, EmotionResult

__all__ = ["EmotionServicer", "result_to_proto"]

log = logging.getLogger(__name__)


def result_to_proto(result: EmotionResult, model_info: audio_pb2.ModelInfo) -> emotion_pb2.ClassifyResponse:
    return emotion_pb2.ClassifyResponse(
        label=result.label,
        display_name=result.display_name,
        confidence=result.confidence,
        probabilities=[common_pb2.EmotionScore(label=s.label, display_name=s.display_name,
                                              probability=s.probability) for s in result.scores],
        windows=result.windows,
        model_info=model_info,
        compute_ms=result.compute_ms,
    )


class EmotionServicer(emotion_pb2_grpc.EmotionServiceServicer):
    def __init__(self, build_engine: Callable[[], EmotionEngine], options: EmotionOptions,
                 batch: BatchOptions, model_names: list[str], random_weights: bool):
        self.options = options
        model = model_names[0] if model_names else "emotion"
        self.model: BatchedModel[EmotionEngine, np.ndarray, EmotionResult] = BatchedModel(
            "emotion", build_engine, EmotionEngine.classify_batch, batch,
            measure=lambda samples: (model, samples.size / SAMPLE_RATE_HZ))
        self.model_info = audio_pb2.ModelInfo(models=model_names, random_weights=random_weights)

    async def load(self) -> EmotionEngine:
        return await self.model.load()

    async def stop(self) -> None:
        await self.model.stop()

    async def Classify(self, request: emotion_pb2.ClassifyRequest,
                       context: grpc.aio.ServicerContext) -> emotion_pb2.ClassifyResponse:
        samples = samples_from_f32le(request.audio.samples_f32le)
        check_segment(samples, self.options.min_segment_samples)  # reject bad input before any (lazy) load
        result = await self.model.submit(samples, deadline_of(context))
        return result_to_proto(result, self.model_info)
