"""Emotion worker: the SpeechBrain model, and what both models (SpeechBrain and
emotion2vec+) share.

In-process engine tests (windowing, batch invariance, loading, int8; those that
hold for both models run for both through ``in_process``) and real worker
processes over gRPC (tests/emotion_workers.py: eager, lazy and busy (int8) groups
per model, started in parallel with one torch thread each at the first test that
needs one, after the in-process tests, so the two never compete for the cores).
Random weights: these tests check structure and behaviour, never accuracy.
"""

from __future__ import annotations

import concurrent.futures
import math
import os
import shutil
import subprocess
import sys
import time
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import grpc
import numpy as np
import pytest
import torch

from scripts.fixtures.emotion2vec import MODEL_DIRNAME as E2V_DIRNAME
from scripts.fixtures.speechbrain_emotion import LABELS, MODEL_DIRNAME
from services.common.audio import SAMPLE_RATE_HZ
from services.common.emotion_labels import DISPLAY_NAMES, EMOTION2VEC_LABELS
from services.common.errors import InvalidInput
from services.emotion.emotion2vec import load_emotion2vec_model
from services.emotion.engine import EmotionEngine, EmotionOptions, plan_windows
from services.emotion.speechbrain import load_speechbrain_model, probabilities_from_output
from tests.audio_helpers import noise
from tests.emotion_workers import classify, probabilities
from tests.procs import serving
from tests.procs import ROOT, ServerProcess, sample, scrape, status_codes_of_concurrent

EXPECTED_CLASSES = [("neu", "中性"), ("ang", "生气"), ("hap", "开心"), ("sad", "悲伤")]


# ---- emotion fixtures ------------------------------------------------------------------------

@pytest.fixture(scope="session")
def emotion_model_dir(emotion_project_root) -> Path:
    return emotion_project_root / "pretrained_models" / MODEL_DIRNAME


@pytest.fixture(scope="session")
def emotion_worker(emotion_servers) -> ServerProcess:
    return serving(emotion_servers["eager"])


@pytest.fixture(scope="session")
def tiny_emotion_model(emotion_model_dir):
    return load_speechbrain_model(emotion_model_dir)


@pytest.fixture(scope="session")
def tiny_engine(tiny_emotion_model) -> EmotionEngine:
    return EmotionEngine(tiny_emotion_model, EmotionOptions())


# ---- engine, in process ----------------------------------------------------------------------

@pytest.mark.parametrize("seconds, expected", [(0.1, 1), (3.0, 1), (10.0, 1), (10.5, 1), (15.0, 1),
                                               (15.1, 2), (18.0, 2), (18.1, 3), (60.0, 8), (125.0, 16)])
def test_window_plan(seconds, expected):
    options = EmotionOptions()
    n = int(round(seconds * SAMPLE_RATE_HZ))
    plan = plan_windows(n, options)
    assert len(plan) == expected
    assert plan[0][0] == 0 and plan[-1][1] == n
    if n > options.single_window_max_samples:
        hop = options.window_samples - options.overlap_samples
        assert len(plan) == 1 + math.ceil((n - options.window_samples) / hop)
        assert all(end - start == options.window_samples for start, end in plan)
        assert all(prev_end - start >= options.overlap_samples for (_, prev_end), (start, _) in zip(plan, plan[1:]))


def test_probabilities_from_log_probabilities_and_logits():
    logits = torch.tensor([[2.0, -1.0, 0.5, 0.0], [0.0, 0.0, 0.0, 0.0]])
    expected = torch.softmax(logits.double(), dim=-1).numpy()
    for output in (torch.softmax(logits, -1), torch.log_softmax(logits, -1), logits):
        result = probabilities_from_output(output)
        np.testing.assert_allclose(result, expected, atol=1e-6)
        np.testing.assert_allclose(result.sum(axis=1), 1.0, atol=1e-9)


def test_max_audio_crops_long_segments_to_their_middle(tiny_emotion_model):
    """EMOTION_MAX_AUDIO_S: a long segment gives the result of its middle N seconds, in one
    window; segments no longer than N are untouched."""
    cropped = EmotionEngine(tiny_emotion_model, EmotionOptions(max_audio_s=3.0))
    whole = EmotionEngine(tiny_emotion_model, EmotionOptions())
    long_segment, short_segment = noise(12.0, 7), noise(2.5, 8)
    got = cropped.classify(long_segment)
    middle = whole.classify(long_segment[int(4.5 * SAMPLE_RATE_HZ):int(7.5 * SAMPLE_RATE_HZ)])
    assert got.windows == 1
    np.testing.assert_allclose([s.probability for s in got.scores], [s.probability for s in middle.scores],
                               atol=1e-6)
    assert cropped.classify(short_segment).scores == whole.classify(short_segment).scores
    with pytest.raises(ValueError, match="max_audio_s"):
        EmotionOptions(max_audio_s=0.05)


def test_padding_would_change_results(tiny_emotion_model):
    """Why the engine never pads: the release's encoder is not padding-invariant."""
    classifier = tiny_emotion_model.classifier
    short, long = torch.from_numpy(noise(1.0, 1)), torch.from_numpy(noise(2.0, 2))
    padded = torch.zeros(2, long.numel())
    padded[0, :short.numel()], padded[1] = short, long
    with torch.inference_mode():
        alone = classifier.classify_batch(short[None])[0][0]
        in_padded_batch = classifier.classify_batch(padded, torch.tensor([0.5, 1.0]))[0][0]
    assert (alone - in_padded_batch).abs().max() > 1e-3


def test_loads_the_fine_tuned_encoder_memory_mapped(tiny_emotion_model, emotion_model_dir):
    checkpoint = torch.load(emotion_model_dir / "wav2vec2.ckpt", map_location="cpu")
    loaded = tiny_emotion_model.classifier.mods.wav2vec2.state_dict()
    assert set(checkpoint) <= set(loaded)
    assert all(torch.equal(loaded[key], value) for key, value in checkpoint.items())
    assert tiny_emotion_model.labels == LABELS


# ---- engine, in process, both models -----------------------------------------------------------

@dataclass
class InProcess:
    """One model loaded in this process: the engine tests below hold for both."""

    model: Any
    engine: EmotionEngine
    model_dir: Path
    load: Callable[..., Any]  # load(model_dir, quantize_int8=False)
    linear_modules: Callable[[Any], list[torch.nn.Module]]
    needed_file: str  # a file the loader cannot do without
    download_flag: str


@pytest.fixture(scope="session", params=["speechbrain", "emotion2vec"])
def in_process(request) -> InProcess:
    if request.param == "speechbrain":
        model_dir = request.getfixturevalue("emotion_model_dir")
        model = request.getfixturevalue("tiny_emotion_model")
        return InProcess(model, EmotionEngine(model, EmotionOptions()), model_dir, load_speechbrain_model,
                         lambda m: list(m.classifier.mods.modules()), "wav2vec2.ckpt", "--speechbrain")
    model_dir = request.getfixturevalue("e2v_dir")
    model = request.getfixturevalue("e2v_model")
    return InProcess(model, EmotionEngine(model, EmotionOptions()), model_dir, load_emotion2vec_model,
                     lambda m: list(m.module.modules()), "tokens.txt", "--emotion2vec")


def scores(result) -> np.ndarray:
    return np.array([s.probability for s in result.scores])


def test_engine_rejects_short_and_empty_segments(in_process):
    results = in_process.engine.classify_batch([np.zeros(0, np.float32), noise(0.05, 1), noise(1.0, 2)])
    assert isinstance(results[0], InvalidInput) and "empty" in str(results[0])
    assert isinstance(results[1], InvalidInput) and "too short" in str(results[1])
    assert not isinstance(results[2], Exception)


def test_batch_gives_the_same_probabilities_as_alone(in_process):
    engine = in_process.engine
    segments = [noise(1.0, 1), noise(2.3, 2), noise(1.0, 3), noise(10.5, 4), noise(0.4, 5), noise(31.0, 6)]
    alone = [engine.classify(segment) for segment in segments]
    together = engine.classify_batch(segments)
    for one, batched in zip(alone, together):
        assert batched.windows == one.windows
        np.testing.assert_allclose(scores(batched), scores(one), atol=1e-4)
        assert batched.label == one.label
    # the random model is not constant: different audio, different probabilities
    assert np.abs(scores(alone[0]) - scores(alone[1])).max() > 1e-3


def test_equal_length_windows_share_one_model_call(in_process):
    calls = []
    model = in_process.model

    class Counting:
        labels = model.labels
        batch_invariant = True

        def predict(self, windows):
            calls.append(windows.shape)
            return model.predict(windows)

    EmotionEngine(Counting(), EmotionOptions()).classify_batch(
        [noise(1.0, 1), noise(1.0, 2), noise(2.0, 3), noise(30.0, 4)])
    # two 1 s segments in one call, the 2 s one alone, the four 10 s windows of 30 s
    # one per call (max_batch_audio_s: 10 s of audio per call)
    assert sorted(calls) == sorted([(2, 16000), (1, 32000)] + [(1, 160000)] * 4)


def test_model_dir_still_loads_after_being_moved(in_process, tmp_path):
    copy = tmp_path / "elsewhere" / in_process.model_dir.name
    shutil.copytree(in_process.model_dir, copy)
    moved = EmotionEngine(in_process.load(copy), EmotionOptions())
    segment = noise(1.5, 7)
    np.testing.assert_allclose(scores(moved.classify(segment)), scores(in_process.engine.classify(segment)),
                               atol=1e-6)
    # nothing written next to the model or in the working directory (SpeechBrain's fetching would)
    assert not (copy / "wav2vec2_checkpoints").exists() and not (ROOT / "wav2vec2_checkpoints").exists()
    assert sorted(p.name for p in copy.iterdir()) == sorted(p.name for p in in_process.model_dir.iterdir())


def test_incomplete_model_dir_names_the_missing_file(in_process, tmp_path):
    copy = tmp_path / in_process.model_dir.name
    shutil.copytree(in_process.model_dir, copy)
    (copy / in_process.needed_file).unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(in_process.needed_file) + r".*download_models\.py "
                       + in_process.download_flag):
        in_process.load(copy)


def test_int8_engine_quantizes_linears_and_stays_batch_invariant(in_process):
    model = in_process.load(in_process.model_dir, quantize_int8=True)
    modules = in_process.linear_modules(model)
    assert not any(type(m) is torch.nn.Linear for m in modules)
    assert any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in modules)
    assert model.batch_invariant is False  # so the engine gives every window a call of its own
    engine = EmotionEngine(model, EmotionOptions())
    segments = [noise(1.5, seed=5), noise(1.5, seed=6), noise(1.5, seed=7), noise(23.0, seed=8)]
    together = engine.classify_batch(segments)
    for segment, batched in zip(segments, together):
        assert scores(batched) == pytest.approx(scores(engine.classify(segment)), abs=1e-6)
    # int8 moves probabilities a little (on random weights; says nothing about accuracy)
    assert scores(together[0]) == pytest.approx(scores(in_process.engine.classify(segments[0])), abs=0.05)


# ---- worker processes ------------------------------------------------------------------------

def test_classify_returns_every_class(workers):
    worker = serving(workers["eager"])
    response = classify(worker.address, noise(2.0, 11))
    assert [(s.label, s.display_name) for s in response.probabilities] == workers.classes
    probs = probabilities(response)
    assert abs(probs.sum() - 1) < 1e-5 and (probs >= 0).all()
    best = int(np.argmax(probs))
    assert (response.label, response.display_name) == workers.classes[best]
    assert response.confidence == pytest.approx(probs[best])
    assert response.windows == 1 and response.compute_ms > 0
    assert list(response.model_info.models) == [workers.model_dirname]
    assert response.model_info.random_weights is True
    # ... and says so to the operator, in its metrics
    assert sample(scrape(worker.metrics_port), "speech_models_info", service="emotion", random_weights="true",
                  models=workers.model_dirname) == 1


E2V_CLASSES = [(label, DISPLAY_NAMES[label]) for label in EMOTION2VEC_LABELS]


@dataclass
class ModelWorkers:
    """One model's worker group (eager / lazy / busy, which is also int8) and the classes it serves."""

    servers: dict[str, ServerProcess]
    classes: list[tuple[str, str]]
    model_dirname: str

    def __getitem__(self, name: str) -> ServerProcess:
        return self.servers[name]


@pytest.fixture(params=["speechbrain", "emotion2vec"])
def workers(request) -> ModelWorkers:
    """Either model's workers: the tests below hold for both."""
    fixture, classes, dirname = {"speechbrain": ("emotion_servers", EXPECTED_CLASSES, MODEL_DIRNAME),
                                 "emotion2vec": ("e2v_servers", E2V_CLASSES, E2V_DIRNAME)}[request.param]
    return ModelWorkers(request.getfixturevalue(fixture), classes, dirname)


def test_concurrent_calls_match_sequential_calls(workers):
    emotion_worker = serving(workers["eager"])
    segments = [noise(0.5, 21), noise(1.3, 22), noise(2.0, 23), noise(3.7, 24), noise(1.3, 25), noise(12.0, 26)]
    sequential = [probabilities(classify(emotion_worker.address, s)) for s in segments]
    with concurrent.futures.ThreadPoolExecutor(len(segments)) as pool:
        concurrent_ = list(pool.map(lambda s: probabilities(classify(emotion_worker.address, s)), segments))
    for one, other in zip(sequential, concurrent_):
        np.testing.assert_allclose(other, one, atol=1e-4)


def test_long_segment_is_classified_in_windows(workers):
    emotion_worker = serving(workers["eager"])
    response = classify(emotion_worker.address, noise(60.0, 31))
    assert response.windows == 8  # 1 + ceil((60 - 10) / (10 - 2))
    assert abs(probabilities(response).sum() - 1) < 1e-5
    assert classify(emotion_worker.address, noise(10.5, 32)).windows == 1  # up to 15 s: whole
    assert classify(emotion_worker.address, noise(15.5, 33)).windows == 2


def test_workers_load_and_serve_without_the_network(workers):
    """Loading (eager, and int8 on ``busy``) and serving opened no connection beyond loopback:
    the group runs under tests/network_guard.py, which refuses and audits any attempt."""
    for name in ("eager", "busy"):
        reply = classify(serving(workers[name]).address, noise(3.0, 61))
        assert [s.label for s in reply.probabilities] == [label for label, _ in workers.classes]
    assert workers["eager"].network_audit.read_text() == ""


@pytest.mark.parametrize("payload, message", [
    (b"", "empty audio"),
    (np.zeros(int(0.05 * SAMPLE_RATE_HZ), "<f4").tobytes(), "too short"),
    (b"\x00" * 4001, "multiple of 4"),
    (np.full(16000, np.nan, "<f4").tobytes(), "NaN"),
])
def test_bad_audio_is_invalid_argument(workers, payload, message):
    emotion_worker = serving(workers["eager"])
    with pytest.raises(grpc.RpcError) as error:
        classify(emotion_worker.address, payload)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in error.value.details()


def test_overload_is_resource_exhausted(workers):
    busy = serving(workers["busy"])
    segment = noise(60.0, 41)
    codes = status_codes_of_concurrent(lambda: classify(busy.address, segment), 8)
    assert set(codes) == {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}, codes
    assert classify(busy.address, noise(1.0, 42)).windows == 1  # recovers once the queue drains


def test_int8_worker_serves_every_class_close_to_fp32(workers):
    worker = serving(workers["busy"])  # the int8 worker
    audio = noise(3.0, seed=11)
    response = classify(worker.address, audio)
    assert [(s.label, s.display_name) for s in response.probabilities] == workers.classes
    assert probabilities(response).sum() == pytest.approx(1.0, abs=1e-5)
    fp32 = probabilities(classify(serving(workers["eager"]).address, audio))
    assert probabilities(response) == pytest.approx(fp32, abs=0.05)
    assert np.abs(probabilities(response) - fp32).max() > 1e-7  # EMOTION_INT8 reached the model


def test_lazy_worker_loads_once_on_first_request_then_applies_its_window_settings(workers):
    lazy = serving(workers["lazy"])

    def loaded() -> tuple[float, float]:
        metrics = scrape(lazy.metrics_port)
        return (sample(metrics, "speech_model_loads_total", service="emotion"),
                sample(metrics, "speech_models_info", service="emotion"))

    assert loaded() == (0, 0)  # SERVING without the model
    first = [noise(1.0, 51)] * 4
    with concurrent.futures.ThreadPoolExecutor(len(first)) as pool:
        results = list(pool.map(lambda s: probabilities(classify(lazy.address, s)), first))
    for result in results[1:]:
        np.testing.assert_allclose(result, results[0], atol=1e-6)
    assert loaded() == (1, 1)  # four concurrent first requests: one load
    classify(lazy.address, noise(2.0, 52))
    assert loaded() == (1, 1)
    # its EMOTION_WINDOW_S=4, _OVERLAP_S=1, _SINGLE_WINDOW_MAX_S=4, _MIN_SEGMENT_MS=500, _MAX_AUDIO_S=10
    assert classify(lazy.address, noise(10.0, 41)).windows == 3  # 1 + ceil((10 - 4) / 3)
    assert classify(lazy.address, noise(30.0, 43)).windows == 3  # cropped to its middle 10 s
    with pytest.raises(grpc.RpcError) as error:
        classify(lazy.address, noise(0.3, 42))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_missing_model_exits_with_download_command(tmp_path):
    started = time.monotonic()
    env = {**os.environ, "PROJECT_ROOT": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    done = subprocess.run([sys.executable, "-m", "services.emotion.server", "--port", "0"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert str(tmp_path / "pretrained_models" / MODEL_DIRNAME) in output
    assert "python scripts/download_models.py --speechbrain" in output
    assert time.monotonic() - started < 30


def test_inconsistent_window_settings_exit_naming_the_problem(emotion_project_root):
    env = {**os.environ, "PROJECT_ROOT": str(emotion_project_root), "PYTHONUNBUFFERED": "1",
           "EMOTION_WINDOW_S": "10", "EMOTION_SINGLE_WINDOW_MAX_S": "5"}
    done = subprocess.run([sys.executable, "-m", "services.emotion.server", "--port", "0"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "single_window_max_s must be >= window_s" in done.stdout + done.stderr
