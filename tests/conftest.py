"""Shared fixtures: real worker/gateway processes on free loopback ports, shared audio."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from scripts.shared_audio import SHARED_AUDIO, load_manifest, read_clip  # noqa: F401 (the tests import them from here)
from tests.network_guard import guarded_env
from tests.procs import ROOT, free_port, serving, start_server  # noqa: F401 (ROOT: the tests import it from here too)
from tests.emotion_workers import (e2v_cache, e2v_dir, e2v_model, e2v_servers,  # noqa: F401 (fixtures)
                                   emotion_project_root, emotion_servers)


# ---- pytest-xdist (scripts/test.sh runs the suite with -n 3) ---------------------------------
# One scheduling unit per module, so a module's servers start once; LoadScopeScheduling
# hands a worker the next unit when it runs low. (pytest-xdist's loadgroup cannot do this
# on pytest 9: it renames node ids through an attribute pytest no longer reads.)

#: Modules sharing session-wide servers beyond their own run as one unit, so those start
#: once: the emotion worker groups of tests/emotion_workers.py (six processes), and the
#: ``stack`` (four processes, ~15 s of CPU to start) with the ``queue1_*`` workers. The
#: stack's unit is the longest (about a third of the suite's wall clock on three workers),
#: so only tests that need the stack belong in its modules: a module's tests that do not
#: go elsewhere (test_hostile_clients.py / test_hostile_stack.py, test_packaging.py /
#: test_client_wheel.py). (Two stack units were tried: no faster on two cores, the second
#: stack and the contention cost more CPU than the waits they filled.)
#: Modules that load the same models in the pytest process are one unit too, so one worker
#: pays for their imports (torch, SpeechBrain with transformers, FunASR: seconds of CPU each).
SHARED_UNITS = {
    **dict.fromkeys(("tests/test_emotion_worker.py", "tests/test_emotion2vec_worker.py", "tests/test_emotion_onnx.py"),
                    "emotion-workers"),
    **dict.fromkeys((f"tests/test_{name}.py" for name in (
        "asr_engine", "fixtures_funasr", "speaker_onnx", "speaker_worker")), "funasr-in-process"),
    **dict.fromkeys((f"tests/test_{name}.py" for name in (
        "end_to_end", "web_page", "hostile_stack", "node_client", "client_wheel", "channels", "speaker_labels",
        "cli", "web_page_emotion2vec", "emotion2vec_end_to_end", "zero_network")), "stack"),
}
#: The longest units (wall clock, by their first module), handed out first: a long one
#: started last would leave the other workers idle. Order only; a missing or stale name
#: costs balance.
LONGEST_FIRST = ("test_end_to_end.py", "test_emotion_worker.py", "test_bench_quick.py", "test_asr_engine.py",
                 "test_hostile_clients.py", "test_asr_worker.py", "test_operations.py", "test_launcher.py",
                 "test_gateway_limits.py", "test_gateway_spine.py", "test_vad_fsmn.py", "test_funasr_import.py",
                 "test_vad_worker.py", "test_download_models.py", "test_packaging.py")


def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class ModuleScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return SHARED_UNITS.get(module, module)

    config.option.loadscopereorder = False  # keep the order below
    return ModuleScheduling(config, log)


def pytest_collection_modifyitems(config, items):
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return
    rank = {name: index for index, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each module's order stays


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


def _with_metrics(module: str, name: str, env: dict[str, str]):
    """Started without waiting for SERVING, so that workers a test needs together load together."""
    metrics_port = free_port()
    server = start_server(module, name, env={**env, "METRICS_PORT": str(metrics_port)}, wait_serving=False)
    server.metrics_port = metrics_port
    return server


@pytest.fixture(scope="session")
def queue1_asr(model_env):
    """A paraformer ASR worker with a queue of one and no batching (one torch thread, metrics
    on ``metrics_port``): overload, refusal and back-pressure tests share it. A test that
    freezes it (SIGSTOP) resumes it before it ends. Not waited for: a test waits with
    :func:`~tests.procs.serving`, or through a gateway in front of it (whose health follows it)."""
    server = _with_metrics("services.asr.server", "asr-queue1", {
        **model_env, "ASR_MODE": "paraformer", "ASR_MAX_QUEUE": "1", "ASR_MAX_BATCH": "1", "TORCH_THREADS": "1"})
    yield server
    server.stop()


@pytest.fixture(scope="session")
def queue1_emotion(model_env):
    """An emotion worker with a queue of one and no batching, as :func:`queue1_asr` (not waited for either)."""
    server = _with_metrics("services.emotion.server", "emotion-queue1", {
        **model_env, "EMOTION_MAX_QUEUE": "1", "EMOTION_MAX_BATCH": "1", "TORCH_THREADS": "1"})
    yield server
    server.stop()


class Stack:
    def __init__(self, vad, asr, emotion, gateway, network_audit: Path):
        self.vad, self.asr, self.emotion, self.gateway = vad, asr, emotion, gateway
        self.network_audit = network_audit
        """What the four processes tried to reach beyond loopback (tests/network_guard.py): empty."""

    def stop(self):
        for server in (self.gateway, self.asr, self.emotion, self.vad):
            server.stop()


@pytest.fixture(scope="session")
def stack(model_env, tmp_path_factory):
    """All four processes, real gRPC between them, tiny models; ASR serves both modes.
    They run under the network guard: ``stack.network_audit`` stays empty."""
    guard, audit = guarded_env(tmp_path_factory.mktemp("stack-network-guard"))
    env = {**model_env, **guard}
    asr_metrics_port = free_port()
    workers = []
    try:  # the three workers load at the same time (their ports are open before they load)
        for module, name, extra in (("services.vad.server", "stack-vad", {}),
                                    ("services.asr.server", "stack-asr",
                                     {"ASR_MODE": "both", "METRICS_PORT": str(asr_metrics_port)}),
                                    ("services.emotion.server", "stack-emotion", {})):
            workers.append(start_server(module, name, env={**env, **extra}, wait_serving=False))
        vad, asr, emotion = (serving(worker) for worker in workers)
        asr.metrics_port = asr_metrics_port
        gateway = start_server("gateway.server", "stack-gateway", env={
            **guard, "VAD_ADDRESS": vad.address, "ASR_ADDRESS": asr.address, "EMOTION_ADDRESS": emotion.address,
            "WORKER_TIMEOUT_S": "30", "TEXT_SENTIMENT": "1"})
    except BaseException:
        for worker in workers:
            worker.stop()
        raise
    running = Stack(vad, asr, emotion, gateway, audit)
    yield running
    running.stop()


@pytest.fixture(scope="session")
def emotion_onnx_dir(tiny_models) -> Path:
    """The tiny SpeechBrain model exported by scripts/export_emotion_onnx.py (cached across runs:
    tests/fixture_models.py); test_emotion_onnx.py and the launcher's small-host test use it."""
    from tests.fixture_models import onnx_export

    return onnx_export("export_emotion_onnx.py", tiny_models / "emotion-recognition-wav2vec2-IEMOCAP")
