"""Emotion worker processes for the tests of both models (SpeechBrain and emotion2vec+).

Each model gets a group of real worker processes on its tiny random-weight fixture,
started together at the first test that needs one (one torch thread each, metrics on
``server.metrics_port``, under the network guard of tests/network_guard.py with its audit
file on ``server.network_audit``): ``eager``, ``lazy`` (EMOTION_LAZY_LOAD, and non-default
window settings) and ``busy`` (a queue of one, for overload, and int8). Tests wait for the
one they use with :func:`serving`. The fixtures
are registered in tests/conftest.py, so tests of either model (and the tests that run
against both, in tests/test_emotion_worker.py) can use them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import grpc
import numpy as np
import pytest

from scripts.fixtures.emotion2vec import model_dir_in_cache as e2v_model_dir_in_cache
from scripts.fixtures.speechbrain_emotion import MODEL_DIRNAME, build_emotion_model
from speech_analysis.worker.v1 import audio_pb2, emotion_pb2, emotion_pb2_grpc
from tests.network_guard import guarded_env
from tests.procs import ServerProcess, server_group

__all__ = ["classify", "probabilities", "emotion_project_root", "emotion_servers",
           "e2v_cache", "e2v_dir", "e2v_model", "e2v_servers"]

VARIANTS = {
    "eager": {},
    # non-default windowing too, which its test checks after the load (one process less)
    "lazy": {"EMOTION_LAZY_LOAD": "1", "EMOTION_WINDOW_S": "4", "EMOTION_WINDOW_OVERLAP_S": "1",
             "EMOTION_SINGLE_WINDOW_MAX_S": "4", "EMOTION_MIN_SEGMENT_MS": "500", "EMOTION_MAX_AUDIO_S": "10"},
    # int8 as well: one process less per model (a worker start costs 3-8 s of CPU); the
    # overload test needs only the queue of one, the int8 test only the setting
    "busy": {"EMOTION_MAX_QUEUE": "1", "EMOTION_MAX_BATCH": "1", "EMOTION_INT8": "1"},
}

def classify(address: str, samples: np.ndarray | bytes, timeout_s: float = 60) -> emotion_pb2.ClassifyResponse:
    data = samples if isinstance(samples, bytes) else samples.astype("<f4").tobytes()
    with grpc.insecure_channel(address) as channel:
        return emotion_pb2_grpc.EmotionServiceStub(channel).Classify(
            emotion_pb2.ClassifyRequest(audio=audio_pb2.AudioChunk(samples_f32le=data)), timeout=timeout_s)


def probabilities(response: emotion_pb2.ClassifyResponse) -> np.ndarray:
    return np.array([score.probability for score in response.probabilities])


def _group(prefix: str, env: dict[str, str], variants: dict[str, dict],
           guard_dir: Path) -> Iterator[dict[str, ServerProcess]]:
    """The group, under the network guard: each server's ``network_audit`` stays empty."""
    guard, audit = guarded_env(guard_dir)
    with server_group("services.emotion.server", prefix, {**env, **guard}, variants) as servers:
        for server in servers.values():
            server.network_audit = audit
        yield servers


@pytest.fixture(scope="session")
def emotion_project_root(tmp_path_factory) -> Path:
    """A PROJECT_ROOT whose pretrained_models/ holds the tiny SpeechBrain emotion model."""
    root = tmp_path_factory.mktemp("emotion-project")
    build_emotion_model(root / "pretrained_models" / MODEL_DIRNAME, "tiny")
    return root


@pytest.fixture(scope="session")
def emotion_servers(emotion_project_root, tmp_path_factory):
    """SpeechBrain workers: eager / lazy / busy (int8)."""
    yield from _group("emotion", {"PROJECT_ROOT": str(emotion_project_root), "TORCH_THREADS": "1"}, VARIANTS,
                      tmp_path_factory.mktemp("emotion-network-guard"))


@pytest.fixture(scope="session")
def e2v_cache(tiny_models) -> Path:
    return tiny_models / "model_cache"


@pytest.fixture(scope="session")
def e2v_dir(e2v_cache) -> Path:
    return e2v_model_dir_in_cache(e2v_cache)


@pytest.fixture(scope="session")
def e2v_model(e2v_dir):
    from services.emotion.emotion2vec import load_emotion2vec_model

    return load_emotion2vec_model(e2v_dir)


@pytest.fixture(scope="session")
def e2v_servers(e2v_cache, tmp_path_factory):
    """emotion2vec+ workers: eager / lazy / busy (int8). PROJECT_ROOT is an
    empty directory: the emotion2vec+ worker needs no SpeechBrain model."""
    empty_root = tmp_path_factory.mktemp("e2v-project")
    env = {"PROJECT_ROOT": str(empty_root), "MODEL_CACHE_DIR": str(e2v_cache), "EMOTION_MODEL": "emotion2vec",
           "TORCH_THREADS": "1"}
    yield from _group("e2v", env, VARIANTS, tmp_path_factory.mktemp("e2v-network-guard"))
