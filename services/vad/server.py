"""VAD worker process: ``python -m services.vad.server [--port N] [--port-file F]``.

Loads Silero (and FSMN-VAD when its model is present), registers the
VadService with health and reflection, and serves until SIGTERM.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

import torch

from speech_analysis.worker.v1 import vad_pb2, vad_pb2_grpc
from services.common import grpc_server
from services.common.errors import InvalidInput
from services.common.metrics import MODELS_INFO
from services.common.settings import ModelSettings, VadSettings, load_many
from services.vad.engine import SileroStream, VadOptions, load_silero
from services.vad.servicer import VadServicer

log = logging.getLogger("services.vad")


def build_factory(models: ModelSettings, default_backend: str):
    """Load the models; return a (backend, options) -> stream factory."""
    silero = load_silero(Path(models.project_root))
    backends = {"silero": lambda options: SileroStream(silero, options)}
    try:
        from services.vad.fsmn import load_fsmn_backend
    except ImportError:
        load_fsmn_backend = None
    if load_fsmn_backend is not None:
        fsmn = load_fsmn_backend(models)
        if fsmn is not None:
            backends["fsmn"] = fsmn
    if default_backend not in backends:
        raise SystemExit(f"VAD_BACKEND={default_backend} but only {sorted(backends)} could be loaded")

    def factory(backend: str, options: VadOptions):
        if backend not in backends:
            raise InvalidInput(f"VAD backend {backend!r} is not loaded on this worker; "
                               f"available: {', '.join(sorted(backends))}")
        return backends[backend](options)

    fsmn_random = False
    if "fsmn" in backends:
        from services.common.fixture_marker import is_random_weights
        from services.common.model_paths import resolve_models

        fsmn_path = resolve_models(Path(models.project_root), models.model_cache_dir).fsmn_vad.path
        fsmn_random = fsmn_path is not None and is_random_weights(fsmn_path)
    MODELS_INFO.labels("vad", "+".join(sorted(backends)), str(fsmn_random).lower()).set(1)

    # Warm-up: one second of noise through every backend before reporting SERVING.
    import numpy as np
    noise = (np.random.default_rng(0).standard_normal(16000) * 0.01).astype(np.float32)
    for name in backends:
        stream = factory(name, VadOptions())
        stream.accept(noise)
        stream.flush()
    return factory


async def main(argv: list[str]) -> None:
    settings, models = load_many(VadSettings, ModelSettings, argv=argv)
    grpc_server.configure_logging(settings.log_level, "vad")
    torch.set_num_threads(settings.torch_threads)
    servicer = VadServicer(settings.default_backend, VadOptions(), settings.max_streams,
                           threads=settings.torch_threads)

    async def load_models() -> None:
        servicer.factory = await asyncio.to_thread(build_factory, models, settings.default_backend)

    await grpc_server.run(
        settings, "vad",
        register=lambda server: vad_pb2_grpc.add_VadServiceServicer_to_server(servicer, server),
        service_names=[vad_pb2.DESCRIPTOR.services_by_name["VadService"].full_name],
        load=load_models,
        streaming=True,
    )


def run() -> None:
    """Console-script entry point."""
    asyncio.run(main(sys.argv[1:]))


if __name__ == "__main__":
    run()
