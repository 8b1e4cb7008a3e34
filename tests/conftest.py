"""Shared fixtures: real worker/gateway processes on free loopback ports, shared audio."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.shared_audio import SHARED_AUDIO, load_manifest, read_clip  # noqa: F401 (the tests import them from here)
from tests.procs import ROOT, free_port, start_server  # noqa: F401 (ROOT: the tests import it from here too)
from tests.emotion_workers import e2v_cache, e2v_servers, emotion_project_root, emotion_servers  # noqa: F401 (fixtures)


@pytest.fixture(scope="session")
def manifest() -> dict:
    return load_manifest()


@pytest.fixture(scope="session")
def vad_worker():
    server = start_server("services.vad.server", "vad")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def spine_gateway(vad_worker):
    """Gateway wired to a real VAD worker; ASR/emotion addresses point at closed ports."""
    server = start_server("gateway.server", "gateway", env={
        "VAD_ADDRESS": vad_worker.address, "ASR_ADDRESS": "127.0.0.1:9", "EMOTION_ADDRESS": "127.0.0.1:9",
        "WORKER_TIMEOUT_S": "5"}, serving_service="vad")  # no ASR: overall health stays NOT_SERVING
    yield server
    server.stop()


# ---- the full stack on tiny generated models ------------------------------------------------

@pytest.fixture(scope="session")
def tiny_models() -> Path:
    """Tiny random-weight models in the real layouts (built once, cached by builder version)."""
    from tests.fixture_models import tiny_models_dir

    return tiny_models_dir()


@pytest.fixture(scope="session")
def model_env(tiny_models, tmp_path_factory) -> dict[str, str]:
    """Environment pointing every worker at the tiny models.

    The emotion model's path is fixed relative to PROJECT_ROOT
    (pretrained_models/emotion-recognition-wav2vec2-IEMOCAP), so PROJECT_ROOT is a
    directory whose pretrained_models/ is the tiny tree.
    """
    root = tmp_path_factory.mktemp("project-root")
    (root / "pretrained_models").symlink_to(tiny_models, target_is_directory=True)
    return {"MODEL_CACHE_DIR": str(tiny_models / "model_cache"), "PROJECT_ROOT": str(root)}


class Stack:
    def __init__(self, vad, asr, emotion, gateway):
        self.vad, self.asr, self.emotion, self.gateway = vad, asr, emotion, gateway

    def stop(self):
        for server in (self.gateway, self.asr, self.emotion, self.vad):
            server.stop()


@pytest.fixture(scope="session")
def stack(model_env):
    """All four processes, real gRPC between them, tiny models; ASR serves both modes."""
    vad = start_server("services.vad.server", "stack-vad", env=model_env)
    asr_metrics_port = free_port()
    asr = start_server("services.asr.server", "stack-asr", env={**model_env, "ASR_MODE": "both",
                                                              "METRICS_PORT": str(asr_metrics_port)})
    asr.metrics_port = asr_metrics_port
    emotion = start_server("services.emotion.server", "stack-emotion", env=model_env)
    gateway = start_server("gateway.server", "stack-gateway", env={
        "VAD_ADDRESS": vad.address, "ASR_ADDRESS": asr.address, "EMOTION_ADDRESS": emotion.address,
        "WORKER_TIMEOUT_S": "30", "TEXT_SENTIMENT": "1"})
    running = Stack(vad, asr, emotion, gateway)
    yield running
    running.stop()
