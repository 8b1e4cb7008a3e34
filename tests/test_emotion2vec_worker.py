"""Emotion worker with EMOTION_MODEL=emotion2vec, on the tiny random-weight emotion2vec+ fixture.

Mirrors tests/test_emotion_worker.py (the SpeechBrain path): in-process engine
tests (the same results as FunASR's own inference, windowing, batch invariance,
loading, int8), then real worker processes over gRPC (tests/emotion_workers.py;
the behaviour both models share, such as windowing, bad input and overload, is
tested for both in tests/test_emotion_worker.py). The fixture lives in
the cached tiny tree (``scripts/tiny_models.py``) under
``model_cache/models/iic/emotion2vec_plus_base``. Random weights: these tests
check structure and behaviour, never accuracy.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from scripts.fixtures.emotion2vec import MODEL_DIRNAME, TOKENS, model_dir_in_cache
from services.common.emotion_labels import EMOTION2VEC_LABELS
from services.common.errors import InvalidInput
from services.emotion.emotion2vec import labels_from_tokens, load_emotion2vec_model
from services.emotion.engine import EmotionEngine, EmotionOptions
from tests.audio_helpers import noise
from tests.emotion_workers import classify
from tests.procs import serving
from tests.procs import ROOT, ServerProcess, sample, scrape, start_server

EXPECTED_CLASSES = [("angry", "生气"), ("disgusted", "厌恶"), ("fearful", "恐惧"), ("happy", "开心"),
                    ("neutral", "中性"), ("other", "其他"), ("sad", "悲伤"), ("surprised", "惊讶"),
                    ("unknown", "未知")]


def scores(result) -> np.ndarray:
    return np.array([s.probability for s in result.scores])


# ---- fixtures ----------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def e2v_dir(e2v_cache) -> Path:
    return model_dir_in_cache(e2v_cache)


@pytest.fixture(scope="session")
def e2v_model(e2v_dir):
    return load_emotion2vec_model(e2v_dir)


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


def test_engine_rejects_short_and_empty_segments(e2v_engine):
    results = e2v_engine.classify_batch([np.zeros(0, np.float32), noise(0.05, 1), noise(1.0, 2)])
    assert isinstance(results[0], InvalidInput) and "empty" in str(results[0])
    assert isinstance(results[1], InvalidInput) and "too short" in str(results[1])
    assert not isinstance(results[2], Exception)


def test_batch_gives_the_same_probabilities_as_alone(e2v_engine):
    segments = [noise(1.0, 1), noise(2.3, 2), noise(1.0, 3), noise(10.5, 4), noise(0.4, 5), noise(31.0, 6)]
    alone = [e2v_engine.classify(segment) for segment in segments]
    together = e2v_engine.classify_batch(segments)
    for one, batched in zip(alone, together):
        assert batched.windows == one.windows
        np.testing.assert_allclose(scores(batched), scores(one), atol=1e-5)
        assert batched.label == one.label
    # the random model is not constant: different audio, different probabilities
    assert np.abs(scores(alone[0]) - scores(alone[1])).max() > 1e-3


def test_equal_length_windows_share_one_model_call(e2v_model):
    calls = []

    class Counting:
        labels = e2v_model.labels
        batch_invariant = True

        def predict(self, windows):
            calls.append(windows.shape)
            return e2v_model.predict(windows)

    EmotionEngine(Counting(), EmotionOptions()).classify_batch(
        [noise(1.0, 1), noise(1.0, 2), noise(2.0, 3), noise(30.0, 4)])
    assert sorted(calls) == sorted([(2, 16000), (1, 32000)] + [(1, 160000)] * 4)


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


def test_model_dir_still_loads_after_being_moved(e2v_engine, e2v_dir, tmp_path):
    copy = tmp_path / "elsewhere" / MODEL_DIRNAME
    shutil.copytree(e2v_dir, copy)
    moved = EmotionEngine(load_emotion2vec_model(copy), EmotionOptions())
    segment = noise(1.5, 7)
    np.testing.assert_allclose(scores(moved.classify(segment)), scores(e2v_engine.classify(segment)), atol=1e-6)
    assert sorted(p.name for p in copy.iterdir()) == sorted(p.name for p in e2v_dir.iterdir())


def test_incomplete_model_dir_names_the_missing_file(e2v_dir, tmp_path):
    copy = tmp_path / MODEL_DIRNAME
    shutil.copytree(e2v_dir, copy)
    (copy / "tokens.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"tokens\.txt.*download_models\.py --emotion2vec"):
        load_emotion2vec_model(copy)


def test_int8_engine_quantizes_linears_and_stays_batch_invariant(e2v_dir, e2v_engine):
    model = load_emotion2vec_model(e2v_dir, quantize_int8=True)
    modules = list(model.module.modules())
    assert not any(type(m) is torch.nn.Linear for m in modules)
    assert any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in modules)
    assert model.batch_invariant is False  # so the engine gives every window a call of its own
    engine = EmotionEngine(model, EmotionOptions())
    segments = [noise(1.5, seed=5), noise(1.5, seed=6), noise(23.0, seed=8)]
    together = engine.classify_batch(segments)
    for segment, batched in zip(segments, together):
        assert scores(batched) == pytest.approx(scores(engine.classify(segment)), abs=1e-6)
    # int8 moves probabilities a little (on random weights; says nothing about accuracy)
    assert scores(together[0]) == pytest.approx(scores(e2v_engine.classify(segments[0])), abs=0.05)


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


def test_emotion2vec_worker_opens_no_network_connection(tmp_path, model_env):
    from tests.test_zero_network import GUARD

    (tmp_path / "sitecustomize.py").write_text(GUARD)
    audit = tmp_path / "audit.log"
    audit.touch()
    env = {**model_env, "PYTHONPATH": f"{tmp_path}:{ROOT}", "NET_AUDIT_FILE": str(audit),
           "EMOTION_MODEL": "emotion2vec", "TORCH_THREADS": "1"}
    server = start_server("services.emotion.server", "e2v-offline", env=env)
    try:
        reply = classify(server.address, noise(3.0, 61), timeout_s=120)
        assert len(reply.probabilities) == 9
    finally:
        server.stop()
    assert audit.read_text() == "", audit.read_text()
