"""Emotion worker with EMOTION_MODEL=emotion2vec, on the tiny random-weight emotion2vec+ fixture.

What only emotion2vec+ has: in-process engine tests (labels from tokens.txt, the
same results as FunASR's own inference, the attention-bias cache, loading), then
real worker processes over gRPC (tests/emotion_workers.py). The behaviour both
models share (windowing, batch invariance, int8, bad input, overload, lazy
loading, no network) is tested for both in tests/test_emotion_worker.py. The fixture lives in
the cached tiny tree (``scripts/tiny_models.py``) under
``model_cache/models/iic/emotion2vec_plus_base``. Random weights: these tests
check structure and behaviour, never accuracy.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
import torch

from scripts.fixtures.emotion2vec import MODEL_DIRNAME, TOKENS, model_dir_in_cache
from services.common.emotion_labels import EMOTION2VEC_LABELS
from services.emotion.emotion2vec import labels_from_tokens
from services.emotion.engine import EmotionEngine, EmotionOptions
from tests.audio_helpers import noise
from tests.emotion_workers import classify
from tests.procs import serving
from tests.procs import ROOT, ServerProcess, sample, scrape

EXPECTED_CLASSES = [("angry", "生气"), ("disgusted", "厌恶"), ("fearful", "恐惧"), ("happy", "开心"),
                    ("neutral", "中性"), ("other", "其他"), ("sad", "悲伤"), ("surprised", "惊讶"),
                    ("unknown", "未知")]


def scores(result) -> np.ndarray:
    return np.array([s.probability for s in result.scores])


# ---- fixtures ----------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def e2v_engine(e2v_model) -> EmotionEngine:
    return EmotionEngine(e2v_model, EmotionOptions())


@pytest.fixture(scope="session")
def e2v_worker(e2v_servers) -> ServerProcess:
    return serving(e2v_servers["eager"])


# ---- engine, in process ------------------------------------------------------------------------

def test_labels_come_from_tokens_txt():
    assert labels_from_tokens(list(TOKENS)) == (EMOTION2VEC_LABELS, tuple(range(9)))
    # FunASR's inference drops placeholder classes ("unuse..."); so does the worker
    assert labels_from_tokens(["生气/angry", "unuse_1", "<unk>"]) == (("angry", "unknown"), (0, 2))


def test_engine_serves_nine_classes_with_display_names(e2v_engine):
    result = e2v_engine.classify(noise(2.0, 1))
    assert [(s.label, s.display_name) for s in result.scores] == EXPECTED_CLASSES
    assert scores(result).sum() == pytest.approx(1.0, abs=1e-9) and (scores(result) >= 0).all()
    best = int(np.argmax(scores(result)))
    assert (result.label, result.display_name) == EXPECTED_CLASSES[best]
    assert result.confidence == pytest.approx(scores(result)[best])


def test_same_probabilities_as_funasr_own_inference(e2v_engine, e2v_dir):
    """The batched predict reimplements Emotion2vec.inference; it must give what FunASR gives."""
    from services.funasr.imports import automodel_class

    AutoModel = automodel_class(e2v_dir)
    reference = AutoModel(model=str(e2v_dir), device="cpu", disable_update=True, disable_pbar=True,
                          disable_log=True)
    for seconds, seed in ((1.0, 3), (4.3, 4)):
        segment = noise(seconds, seed)
        (out,) = reference.generate(segment, granularity="utterance", extract_embedding=False, disable_pbar=True)
        assert out["labels"] == list(TOKENS)
        np.testing.assert_allclose(scores(e2v_engine.classify(segment)), out["scores"], atol=1e-5)


def test_attention_bias_cache_does_not_grow_between_calls(e2v_model):
    """FunASR's encoder caches its ALiBi bias at the largest batch x longest window seen."""
    e2v_model.predict(np.stack([noise(0.5, i) for i in range(8)]))
    assert e2v_model.module.alibi_biases == {}
    e2v_model.predict(noise(12.0, 9)[None])
    assert e2v_model.module.alibi_biases == {}


def test_loads_the_checkpoint_memory_mapped(e2v_model, e2v_dir):
    checkpoint = torch.load(e2v_dir / "model.pt", map_location="cpu")
    loaded = e2v_model.module.state_dict()
    assert set(checkpoint) == set(loaded)
    assert all(torch.equal(loaded[key], value) for key, value in checkpoint.items())
    assert not e2v_model.module.training


# ---- worker processes --------------------------------------------------------------------------

def test_worker_serves_its_labels_and_loads_only_its_model(e2v_worker):
    """(What a classification returns is tested for both models in tests/test_emotion_worker.py.)"""
    response = classify(e2v_worker.address, noise(2.0, 11))
    assert [score.label for score in response.probabilities] == list(EMOTION2VEC_LABELS)
    assert list(response.model_info.models) == [MODEL_DIRNAME] and response.model_info.random_weights
    metrics = scrape(e2v_worker.metrics_port)
    loaded = {key for key in metrics if key.startswith("speech_models_info{")}
    assert len(loaded) == 1 and f'models="{MODEL_DIRNAME}"' in loaded.pop()  # the other model is never loaded
    assert sample(metrics, "speech_model_loads_total", service="emotion") == 1


def test_worker_metrics_name_the_model(e2v_worker):
    classify(e2v_worker.address, noise(3.0, 12))
    text = urllib.request.urlopen(f"http://127.0.0.1:{e2v_worker.metrics_port}/metrics", timeout=5).read().decode()
    lines = text.splitlines()
    assert any(line.startswith("speech_models_info{") and f'models="{MODEL_DIRNAME}"' in line
               and 'random_weights="true"' in line and line.endswith(" 1.0") for line in lines), text
    audio = [float(line.rpartition(" ")[2]) for line in lines
             if line.startswith("speech_model_audio_seconds_total{") and f'model="{MODEL_DIRNAME}"' in line]
    assert audio and audio[0] >= 3.0


def test_missing_model_exits_with_download_command(tmp_path):
    started = time.monotonic()
    cache = tmp_path / "cache"
    env = {**os.environ, "PROJECT_ROOT": str(tmp_path), "MODEL_CACHE_DIR": str(cache), "EMOTION_MODEL": "emotion2vec",
           "PYTHONUNBUFFERED": "1"}
    done = subprocess.run([sys.executable, "-m", "services.emotion.server", "--port", "0"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert str(model_dir_in_cache(cache)) in output
    assert f"python scripts/download_models.py --emotion2vec --cache-dir {cache}" in output
    assert time.monotonic() - started < 30


def test_unknown_emotion_model_is_refused_naming_the_choices(tmp_path):
    env = {**os.environ, "PROJECT_ROOT": str(tmp_path), "EMOTION_MODEL": "whisper", "PYTHONUNBUFFERED": "1"}
    done = subprocess.run([sys.executable, "-m", "services.emotion.server", "--port", "0"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "EMOTION_MODEL" in done.stderr and "speechbrain, emotion2vec" in done.stderr
