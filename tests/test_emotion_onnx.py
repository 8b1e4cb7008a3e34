"""EMOTION_RUNTIME=onnx: the emotion model exported to ONNX and served on onnxruntime, no torch.

The tiny random-weight SpeechBrain fixture is exported by scripts/export_emotion_onnx.py
(the ``emotion_onnx_dir`` fixture of tests/conftest.py, cached across runs) into a
directory given to the worker as EMOTION_ONNX_DIR.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest

from speech_analysis.worker.v1 import audio_pb2, emotion_pb2, emotion_pb2_grpc
from services.emotion.engine import EmotionEngine, EmotionOptions
from services.emotion.speechbrain import load_speechbrain_model
from services.emotion.onnx_runtime import load_onnx_model
from tests.conftest import read_clip
from tests.procs import ROOT, start_server
from services.common.memory import mapped_files

MODEL_DIRNAME = "emotion-recognition-wav2vec2-IEMOCAP"


@pytest.fixture(scope="module")
def model_dir(tiny_models) -> Path:
    return tiny_models / MODEL_DIRNAME


@pytest.fixture(scope="module")
def onnx_dir(emotion_onnx_dir) -> Path:
    return emotion_onnx_dir  # exported once, cached across runs (tests/conftest.py)


def segments() -> list[np.ndarray]:
    audio, _ = read_clip("zh_weather")
    rng = np.random.default_rng(3)
    return [audio[8000:8000 + 16000], audio[20000:20000 + 56000], audio[:16000 * 12],
            (rng.standard_normal(5000) * 0.05).astype(np.float32)]


def scores(result) -> np.ndarray:
    return np.array([s.probability for s in result.scores])


def test_onnx_fp32_matches_speechbrain_and_int8_stays_close(model_dir, onnx_dir):
    torch_engine = EmotionEngine(load_speechbrain_model(model_dir), EmotionOptions())
    fp32 = EmotionEngine(load_onnx_model(onnx_dir, quantized=False, threads=1), EmotionOptions())
    int8 = EmotionEngine(load_onnx_model(onnx_dir, quantized=True, threads=1), EmotionOptions())
    assert fp32.labels == torch_engine.labels == int8.labels
    worst_int8 = 0.0
    for segment in segments():
        reference = torch_engine.classify(segment)
        got = fp32.classify(segment)
        assert got.windows == reference.windows
        np.testing.assert_allclose(scores(got), scores(reference), atol=1e-4)
        worst_int8 = max(worst_int8, float(np.abs(scores(int8.classify(segment)) - scores(reference)).max()))
    assert worst_int8 < 0.1, worst_int8


def test_missing_export_names_the_export_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="export_emotion_onnx.py"):
        load_onnx_model(tmp_path, quantized=True, threads=1)


@pytest.fixture(scope="module")
def onnx_worker(model_env, onnx_dir):
    server = start_server("services.emotion.server", "emotion-onnx", env={
        **model_env, "EMOTION_RUNTIME": "onnx", "EMOTION_INT8": "1", "EMOTION_ONNX_DIR": str(onnx_dir),
        "TORCH_THREADS": "1"})
    yield server
    server.stop()


def test_onnx_worker_serves_without_torch(onnx_worker, onnx_dir):
    expected = EmotionEngine(load_onnx_model(onnx_dir, quantized=True, threads=1), EmotionOptions())
    segment = segments()[1]
    with grpc.insecure_channel(onnx_worker.address) as channel:
        reply = emotion_pb2_grpc.EmotionServiceStub(channel).Classify(emotion_pb2.ClassifyRequest(
            audio=audio_pb2.AudioChunk(samples_f32le=segment.astype("<f4").tobytes())), timeout=60)
    assert len(reply.probabilities) == 4
    np.testing.assert_allclose([p.probability for p in reply.probabilities], scores(expected.classify(segment)),
                               atol=1e-5)
    files = mapped_files(onnx_worker.proc.pid)
    assert not [f for f in files if "libtorch" in f], "EMOTION_RUNTIME=onnx must not load torch"
    assert any("onnxruntime" in f for f in files)


def test_onnx_worker_without_export_exits_naming_the_command(model_env, tmp_path):
    done = subprocess.run([sys.executable, "-m", "services.emotion.server", "--port", "0"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120,
                          env={**model_env, "PATH": "/usr/bin:/bin", "EMOTION_RUNTIME": "onnx",
                               "EMOTION_ONNX_DIR": str(tmp_path)})
    assert done.returncode == 1
    assert "export_emotion_onnx.py" in done.stdout + done.stderr
