"""ASR worker process: ``python -m services.asr.server [--mode paraformer|sensevoice|both]``.

Resolves the model directories for ``ASR_MODE`` (exiting at once, with the
missing path and the fetch command, when any is absent), switches the hub
clients offline, starts the gRPC server with health ``NOT_SERVING``, loads
and warms the models on the model thread, then reports ``SERVING``. All model
calls go through one :class:`~services.common.batching.BatchWorker`.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import sys
from pathlib import Path

from speech_analysis.worker.v1 import asr_pb2, asr_pb2_grpc
from services.asr.engine import load_engine
from services.asr.requests import AsrOptions, ModelDirs, modes_for
from services.asr.servicer import AsrServicer
from services.common import grpc_server
from services.common.batching import BatchOptions
from services.common.metrics import MODELS_INFO
from services.common.model_paths import ModelFilesMissing, required_models, resolve_models
from services.common.offline import enable_offline_mode
from services.common.settings import AsrSettings, ModelSettings, load_many

__all__ = ["resolve_model_dirs", "main", "run"]

log = logging.getLogger("services.asr")


class _QuietFunasr(logging.Filter):
    """Drop FunASR's per-call INFO chatter (it logs through the root logger).

    FunASR logs e.g. "Attempting to parse hotwords as str..." at INFO on every
    request, and "trust_remote_code: False" as a WARNING on every model load.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if "/funasr/" in record.pathname.replace("\\", "/"):
            return record.levelno >= logging.WARNING and not str(record.msg).startswith("trust_remote_code")
        return True


def _quiet_third_party_logs() -> None:
    for handler in logging.getLogger().handlers:
        handler.addFilter(_QuietFunasr())
    try:  # CT-punc's word splitter; it resets its own logger to DEBUG when imported
        import jieba
    except ImportError:
        return
    jieba.setLogLevel(logging.WARNING)


def resolve_model_dirs(models: ModelSettings, mode_setting: str) -> ModelDirs:
    """Local directories of the models ``mode_setting`` needs; raises ModelFilesMissing."""
    layout = resolve_models(Path(models.project_root), models.model_cache_dir)
    names = required_models(mode_setting, emotion=False, vad_backend=None)
    log.info("models:\n%s", layout.describe(names))
    layout.require(names)

    def path(name: str) -> Path | None:
        return layout.get(name).path if name in names else None

    return ModelDirs(paraformer=path("paraformer"), fsmn_vad=path("fsmn_vad"),
                     ct_punc=path("ct_punc"), sensevoice=path("sensevoice"))


async def main(argv: list[str]) -> None:
    settings, models = load_many(AsrSettings, ModelSettings, argv=argv)
    grpc_server.configure_logging(settings.log_level, "asr")
    _quiet_third_party_logs()
    try:
        modes = modes_for(settings.mode)
        dirs = resolve_model_dirs(models, settings.mode.strip().lower())
    except ValueError as exc:
        log.error("%s", exc)
        raise SystemExit(2) from None
    except ModelFilesMissing as exc:
        log.error("cannot start the ASR worker (ASR_MODE=%s):\n%s", settings.mode, exc)
        raise SystemExit(2) from None
    enable_offline_mode()  # before FunASR/ModelScope are imported (load_engine imports them)

    options = AsrOptions(threads=settings.torch_threads, max_segment_s=settings.max_segment_s,
                         quantize_int8=settings.quantize_int8, lean_loading=settings.lean_loading,
                         sensevoice_timestamps=settings.sensevoice_timestamps)
    # Dynamic int8 quantizes activations with one scale per model call: batched requests
    # would change each other's transcripts, so with ASR_INT8 every request is its own call.
    max_batch = 1 if settings.quantize_int8 else settings.max_batch
    servicer = AsrServicer(BatchOptions(max_batch=max_batch, max_wait_ms=settings.batch_wait_ms,
                                        max_queue=settings.max_queue))
    batcher = servicer.batcher

    async def load_models() -> None:
        engine = await batcher.run_exclusive(functools.partial(load_engine, dirs, modes, options))
        if engine.random_weights:
            log.warning("RANDOM WEIGHTS: %s hold generated test fixtures, not trained models; "
                        "transcripts are meaningless (model_info.random_weights is set on every answer)",
                        ", ".join(str(d) for d in engine.random_weight_dirs))
        await batcher.run_exclusive(engine.warm_up)
        # Millions of long-lived objects (FunASR imports every model module, tokenizers hold
        # large vocabularies) would otherwise be re-scanned by every full collection while
        # serving and once more at exit (seconds each): move them out of the collector's view.
        gc.collect()
        gc.freeze()
        servicer.engine = engine
        names = dict.fromkeys(name for mode in modes for name in engine.model_names(mode))
        MODELS_INFO.labels("asr", "+".join(names), str(engine.random_weights).lower()).set(1)
        await batcher.start()
        log.info("serving modes %s (default %s), max_batch %d, max_queue %d",
                 "+".join(modes), modes[0], max_batch, settings.max_queue)

    await grpc_server.run(
        settings, "asr",
        register=lambda server: asr_pb2_grpc.add_AsrServiceServicer_to_server(servicer, server),
        service_names=[asr_pb2.DESCRIPTOR.services_by_name["AsrService"].full_name],
        load=load_models,
        on_stop=batcher.stop,
    )


def run() -> None:
    """Console-script entry point."""
    asyncio.run(main(sys.argv[1:]))


if __name__ == "__main__":
    run()
