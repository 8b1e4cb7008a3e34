"""Emotion worker process: ``python -m services.emotion.server [--port N] [--port-file F]``.

Serves the model ``EMOTION_MODEL`` names: ``speechbrain`` (default) or
``emotion2vec`` (emotion2vec+, ``<MODEL_CACHE_DIR>/models/iic/emotion2vec_plus_base``,
see ``services/emotion/emotion2vec.py``). Checks that the SpeechBrain model directory
(``<PROJECT_ROOT>/pretrained_models/emotion-recognition-wav2vec2-IEMOCAP``), or the
emotion2vec+ one, is complete, exiting at once with the download command if it is not; switches
the model hub clients offline; then loads the model (and warms it up) before
reporting SERVING, or, with ``EMOTION_LAZY_LOAD=1``, reports SERVING at once
and loads on the first request. Serves EmotionService with health and
reflection until SIGTERM.

``EMOTION_RUNTIME=onnx`` serves the model exported by
``scripts/export_emotion_onnx.py`` on onnxruntime instead (int8 with
``EMOTION_INT8=1``): the process then never imports torch or SpeechBrain
(services/emotion/onnx_runtime.py).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

from speech_analysis.worker.v1 import emotion_pb2, emotion_pb2_grpc
from services.common import grpc_server, model_paths
from services.common.batching import BatchOptions
from services.common.fixture_marker import warn_if_random_weights
from services.common.metrics import MODELS_INFO
from services.common.offline import enable_offline_mode
from services.common.settings import EmotionSettings, ModelSettings, load_many
from services.emotion.engine import EmotionEngine, EmotionOptions
from services.emotion.speechbrain import load_speechbrain_model
from services.emotion.servicer import EmotionServicer

log = logging.getLogger("services.emotion")

def resolve_model_dir(models: ModelSettings, emotion_model: str = "speechbrain") -> Path:
    """The model directory, or SystemExit naming what is missing and how to fetch it."""
    layout = model_paths.resolve_models(Path(models.project_root), models.model_cache_dir)
    name = model_paths.EMOTION_MODELS[emotion_model]
    message = layout.missing_message([name])
    if message:
        log.error("%s", message)
        raise SystemExit(1)
    return layout.get(name).path


async def main(argv: list[str]) -> None:
    settings, models = load_many(EmotionSettings, ModelSettings, argv=argv)
    grpc_server.configure_logging(settings.log_level, "emotion")
    model_dir = resolve_model_dir(models, settings.model)
    # The model is local: huggingface_hub/transformers must never try the hub (an offline host
    # would hang in retries). They read the switch once, at import: this runs before
    # speechbrain/transformers are imported (engine.py imports them only inside load_speechbrain_model).
    enable_offline_mode()
    onnx_dir = Path(settings.onnx_dir) if settings.onnx_dir else model_dir / "onnx"
    if settings.runtime == "onnx" and settings.model != "speechbrain":
        log.error("EMOTION_RUNTIME=onnx serves the SpeechBrain model only; use EMOTION_RUNTIME=torch "
                  "with EMOTION_MODEL=%s", settings.model)
        raise SystemExit(2)
    if settings.runtime == "onnx":
        from services.emotion.onnx_runtime import MANIFEST, load_onnx_model, model_file

        for needed in (model_file(onnx_dir, settings.quantize_int8), onnx_dir / MANIFEST):
            if not needed.is_file():  # checked now, also with EMOTION_LAZY_LOAD: fail at start
                log.error("EMOTION_RUNTIME=onnx but %s is missing; export the model once with "
                          "`python scripts/export_emotion_onnx.py --model-dir %s --out %s`",
                          needed, model_dir, onnx_dir)
                raise SystemExit(1)
    else:
        import torch

        torch.set_num_threads(settings.torch_threads)

    random_weights = warn_if_random_weights(model_dir, "emotion")

    try:
        options = EmotionOptions(window_s=settings.window_s, window_overlap_s=settings.window_overlap_s,
                                 single_window_max_s=settings.single_window_max_s,
                                 max_batch_audio_s=settings.max_batch_audio_s,
                                 min_segment_ms=settings.min_segment_ms,
                                 max_audio_s=settings.max_audio_s)
    except ValueError as exc:
        raise SystemExit(f"emotion settings: {exc}") from None

    def load_classifier():
        if settings.model == "emotion2vec":
            from services.emotion.emotion2vec import load_emotion2vec_model

            return load_emotion2vec_model(model_dir, quantize_int8=settings.quantize_int8)
        return load_speechbrain_model(model_dir, quantize_int8=settings.quantize_int8)

    def build_engine() -> EmotionEngine:
        if settings.runtime == "onnx":
            model = load_onnx_model(onnx_dir, quantized=settings.quantize_int8, threads=settings.torch_threads)
        else:
            model = load_classifier()
        engine = EmotionEngine(model, options)
        engine.warm_up()
        MODELS_INFO.labels("emotion", model_dir.name, str(random_weights).lower()).set(1)
        return engine

    servicer = EmotionServicer(
        build_engine, options,
        BatchOptions(max_batch=settings.max_batch, max_wait_ms=settings.batch_wait_ms,
                     max_queue=settings.max_queue),
        model_names=[model_dir.name], random_weights=random_weights)

    async def load_model() -> None:
        await servicer.load()

    if settings.lazy_load:
        log.info("EMOTION_LAZY_LOAD: the model loads on the first request")
    await grpc_server.run(
        settings, "emotion",
        register=lambda server: emotion_pb2_grpc.add_EmotionServiceServicer_to_server(servicer, server),
        service_names=[emotion_pb2.DESCRIPTOR.services_by_name["EmotionService"].full_name],
        load=None if settings.lazy_load else load_model,
        on_stop=servicer.stop,
    )


def run() -> None:
    """Console-script entry point."""
    asyncio.run(main(sys.argv[1:]))


if __name__ == "__main__":
    run()
