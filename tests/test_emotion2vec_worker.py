"""Emotion worker with EMOTION_MODEL=emotion2vec, on the tiny random-weight emotion2vec+ fixture.

Mirrors tests/test_emotion_worker.py (the SpeechBrain path): in-process engine
tests (the same results as FunASR's own inference, windowing, batch invariance,
loading, int8), then real worker processes over gRPC: an eager one (with
metrics), a lazily loading one, one with a queue of 1 (overload) and an int8
one, started together at the first test that needs one. The fixture lives in
the cached tiny tree (``tests/fixture_models.py``) under
``model_cache/models/iic/emotion2vec_plus_base``. Random weights: these tests
check structure and behaviour, never accuracy.
"""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch

from speech_analysis.worker.v1 import audio_pb2, emotion_pb2, emotion_pb2_grpc
from scripts.fixtures.emotion2vec import MODEL_DIRNAME, TOKENS, model_dir_in_cache
from services.common.audio import SAMPLE_RATE_HZ
from services.common.emotion_labels import EMOTION2VEC_LABELS
from services.common.errors import InvalidInput
from services.emotion.emotion2vec import labels_from_tokens, load_emotion2vec_model
from services.emotion.engine import EmotionEngine, EmotionOptions
from tests.procs import ROOT, ServerProcess, free_port, start_server, wait_for_serving

EXPECTED_CLASSES = [("angry", "生气"), ("disgusted", "厌恶"), ("fearful", "恐惧"), ("happy", "开心"),
                    ("neutral", "中性"), ("other", "其他"), ("sad", "悲伤"), ("surprised", "惊讶"),
                    ("unknown", "未知")]


def noise(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(int(round(seconds * SAMPLE_RATE_HZ))) * 0.1).astype(np.float32)


def scores(result) -> np.ndarray:
    return np.array([s.probability for s in result.scores])


# ---- fixtures ----------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def e2v_cache(tiny_models) -> Path:
    return tiny_models / "model_cache"


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
def e2v_servers(e2v_cache, tmp_path_factory):
    """eager (with metrics) / lazy / busy / int8 workers, started together; each test waits for its own.

    PROJECT_ROOT is an empty directory: the emotion2vec worker needs no SpeechBrain model."""
    empty_root = tmp_path_factory.mktemp("e2v-project")
    env = {"PROJECT_ROOT": str(empty_root), "MODEL_CACHE_DIR": str(e2v_cache), "EMOTION_MODEL": "emotion2vec",
           "TORCH_THREADS": "1"}
    metrics_port = free_port()
    variants = {
        "eager": ({"METRICS_PORT": str(metrics_port)}),
        "lazy": {"EMOTION_LAZY_LOAD": "1"},
        "busy": {"EMOTION_MAX_QUEUE": "1", "EMOTION_MAX_BATCH": "1"},
        "int8": {"EMOTION_INT8": "1"},
    }
    with concurrent.futures.ThreadPoolExecutor(len(variants)) as pool:
        futures = {name: pool.submit(start_server, "services.emotion.server", f"e2v-{name}",
                                     env={**env, **extra}, wait_serving=False)
                   for name, extra in variants.items()}
        concurrent.futures.wait(futures.values())
    servers = {name: future.result() for name, future in futures.items() if future.exception() is None}
    failed = [future.exception() for future in futures.values() if future.exception() is not None]
    if failed:
        for server in servers.values():
            server.stop()
        raise failed[0]
    servers["eager"].metrics_port = metrics_port
    yield servers
    for server in servers.values():  # SIGTERM all first: they shut down in parallel
        if server.proc.poll() is None:
            server.proc.send_signal(signal.SIGTERM)
    for server in servers.values():
        server.stop()


def _serving(server: ServerProcess) -> ServerProcess:
    wait_for_serving(server, time.monotonic() + 120)
    return server


@pytest.fixture(scope="session")
def e2v_worker(e2v_servers) -> ServerProcess:
    return _serving(e2v_servers["eager"])


def classify(address: str, samples: np.ndarray | bytes, timeout_s: float = 60) -> emotion_pb2.ClassifyResponse:
    data = samples if isinstance(samples, bytes) else samples.astype("<f4").tobytes()
    with grpc.insecure_channel(address) as channel:
        return emotion_pb2_grpc.EmotionServiceStub(channel).Classify(
            emotion_pb2.ClassifyRequest(audio=audio_pb2.AudioChunk(samples_f32le=data)), timeout=timeout_s)


def probabilities(response: emotion_pb2.ClassifyResponse) -> np.ndarray:
    return np.array([score.probability for score in response.probabilities])


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
    from services.common.funasr_import import automodel_class

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

def test_classify_returns_nine_probabilities(e2v_worker):
    response = classify(e2v_worker.address, noise(2.0, 11))
    assert [(s.label, s.display_name) for s in response.probabilities] == EXPECTED_CLASSES
    probs = probabilities(response)
    assert abs(probs.sum() - 1) < 1e-5 and (probs >= 0).all()
    best = int(np.argmax(probs))
    assert (response.label, response.display_name) == EXPECTED_CLASSES[best]
    assert response.confidence == pytest.approx(probs[best])
    assert response.windows == 1 and response.compute_ms > 0
    assert list(response.model_info.models) == [MODEL_DIRNAME]
    assert response.model_info.random_weights is True
    log = e2v_worker.log()
    assert "RANDOM WEIGHTS" in log and "labels angry, disgusted" in log
    assert "speechbrain" not in log.lower()  # the other model is never touched


def test_worker_metrics_name_the_model(e2v_worker):
    classify(e2v_worker.address, noise(3.0, 12))
    text = urllib.request.urlopen(f"http://127.0.0.1:{e2v_worker.metrics_port}/metrics", timeout=5).read().decode()
    lines = text.splitlines()
    assert any(line.startswith("speech_models_info{") and f'models="{MODEL_DIRNAME}"' in line
               and 'random_weights="true"' in line and line.endswith(" 1.0") for line in lines), text
    audio = [float(line.rpartition(" ")[2]) for line in lines
             if line.startswith("speech_model_audio_seconds_total{") and f'model="{MODEL_DIRNAME}"' in line]
    assert audio and audio[0] >= 3.0


def test_concurrent_calls_match_sequential_calls(e2v_worker):
    segments = [noise(0.5, 21), noise(1.3, 22), noise(2.0, 23), noise(3.7, 24), noise(1.3, 25), noise(12.0, 26)]
    sequential = [probabilities(classify(e2v_worker.address, s)) for s in segments]
    with concurrent.futures.ThreadPoolExecutor(len(segments)) as pool:
        concurrent_ = list(pool.map(lambda s: probabilities(classify(e2v_worker.address, s)), segments))
    for one, other in zip(sequential, concurrent_):
        np.testing.assert_allclose(other, one, atol=1e-4)


def test_long_segment_is_classified_in_windows(e2v_worker):
    response = classify(e2v_worker.address, noise(60.0, 31))
    assert response.windows == 8  # 1 + ceil((60 - 10) / (10 - 2))
    assert abs(probabilities(response).sum() - 1) < 1e-5
    assert classify(e2v_worker.address, noise(10.5, 32)).windows == 1  # up to 15 s: whole
    assert classify(e2v_worker.address, noise(15.5, 33)).windows == 2


@pytest.mark.parametrize("payload, message", [
    (b"", "empty audio"),
    (np.zeros(int(0.05 * SAMPLE_RATE_HZ), "<f4").tobytes(), "too short"),
    (b"\x00" * 4001, "multiple of 4"),
    (np.full(16000, np.nan, "<f4").tobytes(), "NaN"),
])
def test_bad_audio_is_invalid_argument(e2v_worker, payload, message):
    with pytest.raises(grpc.RpcError) as error:
        classify(e2v_worker.address, payload)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in error.value.details()


def test_overload_is_resource_exhausted(e2v_servers):
    busy = _serving(e2v_servers["busy"])
    segment = noise(60.0, 41)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(classify, busy.address, segment) for _ in range(8)]
        codes = []
        for future in futures:
            try:
                future.result()
                codes.append(grpc.StatusCode.OK)
            except grpc.RpcError as exc:
                codes.append(exc.code())
    assert set(codes) == {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}, codes
    assert classify(busy.address, noise(1.0, 42)).windows == 1  # recovers once the queue drains


def test_int8_worker_serves_nine_probabilities(e2v_servers, e2v_worker):
    worker = _serving(e2v_servers["int8"])
    audio = noise(3.0, seed=11)
    response = classify(worker.address, audio)
    assert [(s.label, s.display_name) for s in response.probabilities] == EXPECTED_CLASSES
    assert probabilities(response).sum() == pytest.approx(1.0, abs=1e-5)
    assert probabilities(response) == pytest.approx(probabilities(classify(e2v_worker.address, audio)), abs=0.05)
    assert "int8 True" in worker.log()


def test_lazy_worker_loads_once_on_first_request(e2v_servers):
    lazy = _serving(e2v_servers["lazy"])
    assert "loading emotion model" not in lazy.log()  # SERVING without the model
    first = [noise(1.0, 51)] * 4
    with concurrent.futures.ThreadPoolExecutor(len(first)) as pool:
        results = list(pool.map(lambda s: probabilities(classify(lazy.address, s)), first))
    for result in results[1:]:
        np.testing.assert_allclose(result, results[0], atol=1e-6)
    classify(lazy.address, noise(2.0, 52))
    log = lazy.log()
    assert log.count("loading emotion model") == 1
    assert log.count("emotion model loaded from") == 1
    assert log.index("emotion SERVING") < log.index("loading emotion model")


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
