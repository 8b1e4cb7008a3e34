"""Speaker worker process: ``python -m services.speaker.server [--port N] [--port-file F]``.

Serves SpeakerService (one speaker embedding per finished segment) with FunASR's
CAM++ from ``<MODEL_CACHE_DIR>/models/iic/speech_campplus_sv_zh-cn_16k-common``
(or ``hub/models/iic/...``; see ``services/common/model_paths.py``). Checks that
the model directory is complete, exiting at once with the download command
(``scripts/download_models.py --speaker``) if it is not; switches the model hub
clients offline; loads the model and warms it up before reporting SERVING; serves
with health, reflection and metrics until SIGTERM.

``SPEAKER_RUNTIME=onnx`` serves the export made by ``scripts/export_speaker_onnx.py``
on onnxruntime instead (fbank features by kaldi-native-fbank): the process then
never imports torch or FunASR (services/speaker/onnx_runtime.py). A missing or
stale export ends the process at start, naming the export command.

The worker is optional: the gateway asks it for embeddings only when
``SPEAKER_ADDRESS`` is set (speaker labels for mono audio, off by default).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

from speech_analysis.worker.v1 import speaker_pb2, speaker_pb2_grpc
from services.common import grpc_server, model_paths
from services.common.batching import BatchOptions
from services.common.fixture_marker import warn_if_random_weights
from services.common.metrics import MODELS_INFO
from services.common.offline import enable_offline_mode
from services.common.settings import ModelSettings, SpeakerSettings, load_many
from services.speaker.engine import SpeakerEngine, SpeakerOptions, load_campplus_model
from services.speaker.servicer import SpeakerServicer

log = logging.getLogger("services.speaker")


def resolve_model_dir(models: ModelSettings) -> Path:
    """The CAM++ model directory, or SystemExit naming what is missing and how to fetch it."""
    layout = model_paths.resolve_models(Path(models.project_root), models.model_cache_dir)
    message = layout.missing_message([model_paths.SPEAKER_MODEL])
    if message:
        log.error("%s", message)
        raise SystemExit(1)
    return layout.get(model_paths.SPEAKER_MODEL).path


async def main(argv: list[str]) -> None:
    settings, models = load_many(SpeakerSettings, ModelSettings, argv=argv)
    grpc_server.configure_logging(settings.log_level, "speaker")
    try:
        options = SpeakerOptions(min_segment_ms=settings.min_segment_ms, max_audio_s=settings.max_audio_s)
    except ValueError as exc:  # like an unparsable value: not worth restarting
        log.error("speaker settings: %s", exc)
        raise SystemExit(2) from None
    model_dir = resolve_model_dir(models)
    enable_offline_mode()  # before FunASR (and the hub clients it imports) is imported
    onnx_dir = Path(settings.onnx_dir) if settings.onnx_dir else model_dir / "onnx"
    if settings.runtime == "onnx":
        from services.speaker.onnx_runtime import check_export, load_onnx_model

        try:
            check_export(onnx_dir, model_dir)  # now, before serving: a missing export fails at start
        except (FileNotFoundError, ValueError) as exc:
            log.error("%s", exc)
            raise SystemExit(1) from None
    else:
        import torch

        torch.set_num_threads(settings.torch_threads)
    random_weights = warn_if_random_weights(model_dir, "speaker")

    def build_engine() -> SpeakerEngine:
        if settings.runtime == "onnx":
            model = load_onnx_model(onnx_dir, model_dir, threads=settings.torch_threads)
        else:
            model = load_campplus_model(model_dir)
        engine = SpeakerEngine(model, options)
        engine.warm_up()
        if settings.runtime == "onnx" and not {"torch", "funasr"} & set(sys.modules):
            log.info("torch not imported: SPEAKER_RUNTIME=onnx runs without torch and FunASR")
        MODELS_INFO.labels("speaker", model_dir.name, str(random_weights).lower()).set(1)
        return engine

    servicer = SpeakerServicer(
        build_engine, options,
        BatchOptions(max_batch=settings.max_batch, max_wait_ms=settings.batch_wait_ms, max_queue=settings.max_queue),
        model_names=[model_dir.name], random_weights=random_weights)

    async def load_model() -> None:
        await servicer.load()

    await grpc_server.run(
        settings, "speaker",
        register=lambda server: speaker_pb2_grpc.add_SpeakerServiceServicer_to_server(servicer, server),
        service_names=[speaker_pb2.DESCRIPTOR.services_by_name["SpeakerService"].full_name],
        load=load_model,
        on_stop=servicer.stop,
    )


def run() -> None:
    """Console-script entry point."""
    asyncio.run(main(sys.argv[1:]))


if __name__ == "__main__":
    run()
