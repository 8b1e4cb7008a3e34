"""VAD worker process: ``python -m services.vad.server [--port N] [--port-file F]``.

Loads the backends ``VAD_BACKENDS`` lists (default: Silero only, on
onnxruntime, so the process never imports torch; ``silero,fsmn`` adds FunASR's
FSMN-VAD, which brings torch with it), registers the VadService with health
and reflection, and serves until SIGTERM. A stream asking for a backend that
is not loaded is refused with FAILED_PRECONDITION naming ``VAD_BACKENDS``.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Callable

import numpy as np

from speech_analysis.worker.v1 import vad_pb2, vad_pb2_grpc
from services.common import grpc_server
from services.common.errors import NotEnabled
from services.common.metrics import MODELS_INFO
from services.common.settings import ModelSettings, VadSettings, load_many, split_list
from services.vad.engine import SileroStream, VadOptions, VadStream, load_silero
from services.vad.servicer import VadServicer

log = logging.getLogger("services.vad")


def _load_fsmn(models: ModelSettings, threads: int) -> tuple[Callable[[VadOptions], VadStream], bool]:
    """The FSMN-VAD stream factory and whether its weights are a random test fixture."""
    import torch  # only FSMN needs it

    torch.set_num_threads(threads)
    from services.common.fixture_marker import is_random_weights
    from services.common.model_paths import resolve_models
    from services.vad.fsmn import load_fsmn_backend

    fsmn = load_fsmn_backend(models)
    resolved = resolve_models(Path(models.project_root), models.model_cache_dir).fsmn_vad
    if fsmn is None:
        raise SystemExit(f"VAD_BACKENDS includes fsmn but FSMN-VAD is not installed at {resolved.path} "
                         f"(missing {', '.join(resolved.missing) or 'location ambiguous'}); download it "
                         f"(scripts/download_models.py --paraformer) or set VAD_BACKENDS=silero")
    return fsmn, resolved.path is not None and is_random_weights(resolved.path)


def _default_not_loaded(default_backend: str, backends_setting: str) -> str:
    return (f"VAD_BACKEND={default_backend} is not in VAD_BACKENDS={backends_setting}: the default "
            f"backend must be loaded; add it (e.g. VAD_BACKENDS=silero,fsmn) or change VAD_BACKEND")


def build_factory(models: ModelSettings, backends_setting: str, default_backend: str, threads: int = 2):
    """Load the backends ``backends_setting`` lists; return a (backend, options) -> stream factory."""
    wanted = split_list(backends_setting)
    if default_backend not in wanted:
        raise SystemExit(_default_not_loaded(default_backend, backends_setting))
    backends: dict[str, Callable[[VadOptions], VadStream]] = {}
    fsmn_random = False
    if "silero" in wanted:
        silero = load_silero(Path(models.project_root))
        backends["silero"] = lambda options: SileroStream(silero, options)
    if "fsmn" in wanted:
        backends["fsmn"], fsmn_random = _load_fsmn(models, threads)
    MODELS_INFO.labels("vad", "+".join(sorted(backends)), str(fsmn_random).lower()).set(1)

    def factory(backend: str, options: VadOptions) -> VadStream:
        if backend not in backends:
            raise NotEnabled(f"VAD backend {backend!r} is not loaded on this worker (VAD_BACKENDS="
                             f"{','.join(backends)}); start it with VAD_BACKENDS listing {backend}")
        return backends[backend](options)

    # Warm-up: one second of noise through every backend before reporting SERVING.
    noise = (np.random.default_rng(0).standard_normal(16000) * 0.01).astype(np.float32)
    for name in backends:
        stream = factory(name, VadOptions())
        stream.accept(noise)
        stream.flush()
    return factory


async def main(argv: list[str]) -> None:
    settings, models = load_many(VadSettings, ModelSettings, argv=argv)
    grpc_server.configure_logging(settings.log_level, "vad")
    if settings.default_backend not in split_list(settings.backends):
        print(f"services.vad.server: error: {_default_not_loaded(settings.default_backend, settings.backends)}",
              file=sys.stderr)
        sys.exit(2)  # invalid settings: the launcher's supervisor does not retry status 2
    servicer = VadServicer(settings.default_backend, VadOptions(), settings.max_streams,
                           threads=settings.torch_threads)

    async def load_models() -> None:
        servicer.factory = await asyncio.to_thread(build_factory, models, settings.backends,
                                                   settings.default_backend, settings.torch_threads)
        if "torch" not in sys.modules:
            log.info("torch not imported: VAD_BACKENDS=%s runs without it", settings.backends)

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
