"""gRPC EmotionService: converts protobuf <-> engine types; no model logic here.

Every Classify call goes through one :class:`~services.common.batching.BatchWorker`
(bounded queue -> ``RESOURCE_EXHAUSTED``, the caller's deadline, one model
thread), which hands concurrent segments to ``EmotionEngine.classify_batch``
together.

The engine is built by :meth:`EmotionServicer.load`: the server calls it
before reporting SERVING, or, with lazy loading, the first request does.
Concurrent first requests share one load (one future); a failed lazy load is
reported to the requests that waited for it and retried by the next one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

import grpc

from speech_analysis.v1 import common_pb2
from speech_analysis.worker.v1 import audio_pb2, emotion_pb2, emotion_pb2_grpc
from services.common.audio import SAMPLE_RATE_HZ, check_segment, samples_from_f32le
from services.common.batching import BatchOptions, BatchWorker
from services.common.errors import NotReady
from services.common.metrics import MODEL_LOADS
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
        self._build_engine = build_engine  # blocking; runs on the model thread
        self.options = options
        self.engine: EmotionEngine | None = None
        model = model_names[0] if model_names else "emotion"
        self.worker: BatchWorker = BatchWorker("emotion", self._classify_batch, batch,
                                               measure=lambda samples: (model, samples.size / SAMPLE_RATE_HZ))
        self.model_info = audio_pb2.ModelInfo(models=model_names, random_weights=random_weights)
        self._loading: asyncio.Future | None = None

    def _classify_batch(self, segments):
        assert self.engine is not None  # submit() is only reached after load()
        return self.engine.classify_batch(segments)

    async def load(self) -> EmotionEngine:
        """Build the engine once; concurrent callers wait for the same load."""
        if self.engine is not None:
            return self.engine
        if self._loading is None:
            self._loading = asyncio.ensure_future(self._load())
        loading = self._loading
        try:
            # shield: a caller that gives up (deadline, cancel) must not cancel the load
            return await asyncio.shield(loading)
        except Exception as exc:
            if self._loading is loading:
                self._loading = None  # let a later request try again
            raise NotReady(f"emotion model failed to load ({exc}); see the worker log") from exc

    async def _load(self) -> EmotionEngine:
        started = time.monotonic()
        log.info("loading emotion model")
        try:
            engine = await self.worker.run_exclusive(self._build_engine)
        except Exception:
            log.exception("loading the emotion model failed")
            raise
        self.engine = engine
        MODEL_LOADS.labels("emotion").inc()
        log.info("emotion model ready in %.1f s", time.monotonic() - started)
        return engine

    async def stop(self) -> None:
        await self.worker.stop()

    async def Classify(self, request: emotion_pb2.ClassifyRequest,
                       context: grpc.aio.ServicerContext) -> emotion_pb2.ClassifyResponse:
        samples = samples_from_f32le(request.audio.samples_f32le)
        check_segment(samples, self.options.min_segment_samples)  # reject bad input before any (lazy) load
        await self.load()
        remaining_s = context.time_remaining()
        deadline_s = time.monotonic() + remaining_s if remaining_s is not None else None
        result = await self.worker.submit(samples, deadline_s)
        return result_to_proto(result, self.model_info)
