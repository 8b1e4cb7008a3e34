"""Speaker worker (CAM++ speaker embeddings) on the tiny random-weight CAM++ fixture.

In-process engine tests first (the same embedding as FunASR's own inference,
cropping to the middle, batch invariance, the input contract, loading), then
real worker processes over gRPC on 127.0.0.1: ``eager`` (with metrics) and
``busy`` (a queue of one: overload) start together at the first test that
needs one; the loading-order test starts its own worker from a copy of the
model in the ``hub/models/iic`` layout. The fixture lives in the cached tiny
tree (``tests/fixture_models.py``) under
``model_cache/models/iic/speech_campplus_sv_zh-cn_16k-common``. Random weights:
these tests check structure and behaviour, never accuracy. The no-network
check is in tests/test_zero_network.py.
"""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch
from grpc_health.v1 import health_pb2

from scripts.fixtures.campplus import CHECKPOINT, MODEL_DIRNAME, model_dir_in_cache
from services.common.audio import SAMPLE_RATE_HZ, crop_middle
from services.common.errors import InvalidInput
from services.speaker.engine import (
    SpeakerEngine,
    SpeakerOptions,
    load_campplus_model,
)
from speech_analysis.worker.v1 import audio_pb2, speaker_pb2, speaker_pb2_grpc
from tests.audio_helpers import noise
from tests.procs import ROOT, ServerProcess, server_group, serving, start_server, status_codes_of_concurrent

EMBEDDING_SIZE = 192

def embed(address: str, samples: np.ndarray | bytes, timeout_s: float = 60) -> speaker_pb2.EmbedResponse:
    data = samples if isinstance(samples, bytes) else samples.astype("<f4").tobytes()
    with grpc.insecure_channel(address) as channel:
        return speaker_pb2_grpc.SpeakerServiceStub(channel).Embed(
            speaker_pb2.EmbedRequest(audio=audio_pb2.AudioChunk(samples_f32le=data)), timeout=timeout_s)


def vector(response: speaker_pb2.EmbedResponse) -> np.ndarray:
    return np.array(response.embedding, dtype=np.float64)


# ---- fixtures ----------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def speaker_cache(tiny_models) -> Path:
    return tiny_models / "model_cache"


@pytest.fixture(scope="session")
def campplus_dir(speaker_cache) -> Path:
    return model_dir_in_cache(speaker_cache)


@pytest.fixture(scope="session")
def campplus_model(campplus_dir):
    return load_campplus_model(campplus_dir)


@pytest.fixture(scope="session")
def engine(campplus_model) -> SpeakerEngine:
    return SpeakerEngine(campplus_model, SpeakerOptions())


@pytest.fixture(scope="session")
def speaker_servers(speaker_cache, tmp_path_factory):
    """eager (with metrics) / busy (a queue of one), started in parallel, one torch thread each.
    PROJECT_ROOT is an empty directory: the speaker worker needs nothing but the model cache."""
    env = {"PROJECT_ROOT": str(tmp_path_factory.mktemp("speaker-project")), "MODEL_CACHE_DIR": str(speaker_cache),
           "TORCH_THREADS": "1"}
    variants = {"eager": {}, "busy": {"SPEAKER_MAX_QUEUE": "1", "SPEAKER_MAX_BATCH": "1"}}
    with server_group("services.speaker.server", "speaker", env, variants) as servers:
        yield servers


@pytest.fixture(scope="session")
def worker(speaker_servers) -> ServerProcess:
    return serving(speaker_servers["eager"])


# ---- engine, in process ------------------------------------------------------------------------

def test_same_embedding_as_funasr_own_inference(engine, campplus_dir):
    """The worker's features and forward pass are CAMPPlus.inference's; only normalised."""
    from services.funasr.imports import automodel_class

    AutoModel = automodel_class(campplus_dir)
    reference = AutoModel(model=str(campplus_dir), device="cpu", ncpu=1, disable_update=True, disable_pbar=True,
                          disable_log=True)
    for seconds, seed in ((0.7, 3), (4.3, 4)):
        segment = noise(seconds, seed)
        (out,) = reference.generate(segment, disable_pbar=True)
        expected = out["spk_embedding"][0].numpy().astype(np.float64)
        expected /= np.linalg.norm(expected)
        result = engine.embed(segment)
        assert result.embedding.shape == (EMBEDDING_SIZE,) and result.embedding.dtype == np.float32
        np.testing.assert_allclose(result.embedding, expected, atol=1e-5)


def test_embeddings_are_unit_length_repeatable_and_tell_voices_apart(engine):
    first, again, other = engine.embed(noise(2.0, 1)), engine.embed(noise(2.0, 1)), engine.embed(noise(2.0, 2))
    assert np.linalg.norm(first.embedding.astype(np.float64)) == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_array_equal(first.embedding, again.embedding)
    assert float(first.embedding @ other.embedding) < 0.99  # the random model is not constant
    assert first.audio_ms == 2000 and first.compute_ms > 0


def test_long_segment_is_embedded_from_its_middle(engine):
    middle = noise(10.0, 5)
    long = np.concatenate([noise(2.0, 6), middle, noise(2.0, 7)])
    np.testing.assert_array_equal(crop_middle(long, engine.options.max_audio_samples), middle)
    result = engine.embed(long)
    assert result.audio_ms == 10_000
    # only the middle counts: other edges around the same middle give the same embedding
    other_edges = np.concatenate([noise(2.0, 8), middle, noise(2.0, 9)])
    np.testing.assert_allclose(result.embedding, engine.embed(other_edges).embedding, atol=1e-6)
    assert engine.embed(noise(9.5, 10)).audio_ms == 9_500  # shorter: all of it


def test_batch_gives_the_same_embeddings_as_alone_without_padding(engine, campplus_model):
    segments = [noise(1.0, 11), noise(2.3, 12), noise(1.0, 13), noise(0.4, 14), noise(12.0, 15), noise(1.0, 16)]
    alone = [engine.embed(segment).embedding for segment in segments]
    calls = []

    class Counting:
        embedding_size = campplus_model.embedding_size

        def embed(self, batch):
            calls.append(batch.shape)
            return campplus_model.embed(batch)

    together = SpeakerEngine(Counting(), engine.options).embed_batch(segments)
    for one, batched in zip(alone, together):
        np.testing.assert_allclose(batched.embedding, one, atol=1e-5)
    # equal lengths share a call; every other length is a call of its own, never padded
    assert sorted(calls) == sorted([(3, 16000), (1, 36800), (1, 6400), (1, 160000)])


@pytest.mark.parametrize("samples, message", [
    (np.zeros(0, np.float32), "empty audio"),
    (noise(0.1, 1), "too short"),
    (np.full(8000, np.nan, np.float32), "NaN"),
])
def test_engine_refuses_bad_segments_one_by_one(engine, samples, message):
    results = engine.embed_batch([samples, noise(1.0, 2)])
    assert isinstance(results[0], InvalidInput) and message in str(results[0])
    assert results[1].embedding.shape == (EMBEDDING_SIZE,)  # a bad segment fails only itself


def test_engine_entry_checks_the_internal_audio_contract(engine):
    for wrong in (noise(1.0, 1).astype(np.float64), np.zeros((2, 8000), np.float32), [0.0] * 8000):
        with pytest.raises(TypeError, match="1-D float32"):
            engine.embed(wrong)
    assert engine.embed(noise(0.2, 3)).audio_ms == 200  # exactly the minimum is accepted


def test_options_refuse_lengths_the_model_cannot_embed():
    with pytest.raises(ValueError, match="min_segment_ms must be at least 45"):
        SpeakerOptions(min_segment_ms=20)
    with pytest.raises(ValueError, match="max_audio_s must be at least min_segment_ms"):
        SpeakerOptions(min_segment_ms=2000, max_audio_s=1.0)
    assert SpeakerOptions(min_segment_ms=45).min_segment_samples == 720


def test_loads_the_checkpoint_memory_mapped_in_eval_mode(campplus_model, campplus_dir):
    checkpoint = torch.load(campplus_dir / CHECKPOINT, map_location="cpu")
    loaded = campplus_model.module.state_dict()
    assert set(checkpoint) == set(loaded)
    assert all(torch.equal(loaded[key], value) for key, value in checkpoint.items())
    assert not campplus_model.module.training


def test_incomplete_model_dir_names_the_missing_file(campplus_dir, tmp_path):
    copy = tmp_path / MODEL_DIRNAME
    shutil.copytree(campplus_dir, copy)
    (copy / CHECKPOINT).unlink()
    with pytest.raises(FileNotFoundError, match=r"campplus_cn_common\.bin.*download_models\.py --speaker"):
        load_campplus_model(copy)


# ---- worker processes --------------------------------------------------------------------------

def test_embed_returns_a_unit_length_embedding_marked_random(worker, engine):
    audio = noise(3.0, 21)
    response = embed(worker.address, audio)
    embedding = vector(response)
    assert embedding.shape == (EMBEDDING_SIZE,)
    assert np.linalg.norm(embedding) == pytest.approx(1.0, abs=1e-5)
    assert response.audio_ms == 3000 and response.compute_ms > 0
    assert list(response.model_info.models) == [MODEL_DIRNAME]
    assert response.model_info.random_weights is True
    np.testing.assert_array_equal(vector(embed(worker.address, audio)), embedding)  # same audio, same answer
    np.testing.assert_allclose(embedding, engine.embed(audio).embedding, atol=1e-5)
    assert float(embedding @ vector(embed(worker.address, noise(3.0, 22)))) < 0.99


def test_long_segment_is_embedded_from_its_middle_seconds(worker):
    assert embed(worker.address, noise(14.0, 23)).audio_ms == 10_000


def test_concurrent_calls_match_sequential_calls(worker):
    segments = [noise(1.0, 31), noise(1.0, 32), noise(2.5, 33), noise(0.3, 34), noise(1.0, 35), noise(6.0, 36)]
    sequential = [vector(embed(worker.address, s)) for s in segments]
    with concurrent.futures.ThreadPoolExecutor(len(segments)) as pool:
        together = list(pool.map(lambda s: vector(embed(worker.address, s)), segments))
    for one, other in zip(sequential, together):
        np.testing.assert_allclose(other, one, atol=1e-5)


@pytest.mark.parametrize("payload, message", [
    (b"", "empty audio"),
    (b"\x00" * 4001, "multiple of 4"),
    (np.full(16000, np.nan, "<f4").tobytes(), "NaN"),
    (np.zeros(int(0.15 * SAMPLE_RATE_HZ), "<f4").tobytes(), "too short"),
])
def test_bad_audio_is_invalid_argument(worker, payload, message):
    with pytest.raises(grpc.RpcError) as error:
        embed(worker.address, payload)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in error.value.details()


def test_message_over_the_size_limit_is_refused_and_the_worker_carries_on(worker):
    too_big = bytes(8 * 1024 * 1024 + 1024)  # MAX_MESSAGE_BYTES is 8 MiB
    with pytest.raises(grpc.RpcError) as error:
        embed(worker.address, too_big)
    assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert len(embed(worker.address, noise(1.0, 41)).embedding) == EMBEDDING_SIZE


def test_overload_is_resource_exhausted(speaker_servers):
    busy = serving(speaker_servers["busy"])
    segment = noise(10.0, 42)
    codes = status_codes_of_concurrent(lambda: embed(busy.address, segment), 8)
    assert set(codes) == {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}, codes
    assert len(embed(busy.address, noise(1.0, 43)).embedding) == EMBEDDING_SIZE  # recovers once drained


def test_metrics_name_the_model_and_count_the_audio(worker):
    embed(worker.address, noise(3.0, 51))
    text = urllib.request.urlopen(f"http://127.0.0.1:{worker.metrics_port}/metrics", timeout=5).read().decode()
    lines = text.splitlines()
    assert any(line.startswith("speech_models_info{") and 'service="speaker"' in line
               and f'models="{MODEL_DIRNAME}"' in line and 'random_weights="true"' in line
               and line.endswith(" 1.0") for line in lines), text
    audio = [float(line.rpartition(" ")[2]) for line in lines
             if line.startswith("speech_model_audio_seconds_total{") and f'model="{MODEL_DIRNAME}"' in line]
    assert audio and audio[0] >= 3.0
    assert any(line.startswith("speech_rpcs_total{") and 'service="speech_analysis.worker.v1.SpeakerService"' in line
               and 'method="Embed"' in line and 'code="OK"' in line for line in lines), text


def test_hub_layout_loads_and_health_is_serving_only_after_the_model(campplus_dir, tmp_path, worker):
    """A model cache in the hub/models/iic layout; NOT_SERVING (and Embed UNAVAILABLE) until
    the model is loaded and warmed up; SIGTERM ends the process cleanly."""
    cache = tmp_path / "cache"
    shutil.copytree(campplus_dir, cache / "hub" / "models" / "iic" / MODEL_DIRNAME)
    server = start_server("services.speaker.server", "speaker-hub", wait_serving=False,
                          env={"PROJECT_ROOT": str(tmp_path), "MODEL_CACHE_DIR": str(cache), "TORCH_THREADS": "1"})
    try:
        # The port is bound before the model loads (importing FunASR alone takes a second).
        assert server.health() == health_pb2.HealthCheckResponse.NOT_SERVING
        assert server.health(service="liveness") == health_pb2.HealthCheckResponse.SERVING
        try:
            embed(server.address, noise(1.0, 61))  # succeeds only if the load finished meanwhile
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.UNAVAILABLE, error
        serving(server)
        audio = noise(2.0, 62)
        np.testing.assert_allclose(vector(embed(server.address, audio)), vector(embed(worker.address, audio)),
                                   atol=1e-5)
    finally:
        code = server.stop()
    assert code == 0


def test_missing_model_exits_with_download_command(tmp_path):
    started = time.monotonic()
    cache = tmp_path / "cache"
    env = {**os.environ, "PROJECT_ROOT": str(tmp_path), "MODEL_CACHE_DIR": str(cache), "PYTHONUNBUFFERED": "1"}
    done = subprocess.run([sys.executable, "-m", "services.speaker.server", "--port", "0"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    output = done.stdout + done.stderr
    assert done.returncode == 1
    assert str(model_dir_in_cache(cache)) in output
    assert f"python scripts/download_models.py --speaker --cache-dir {cache}" in output
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("settings, message", [
    ({"SPEAKER_MIN_SEGMENT_MS": "20"}, "SPEAKER_MIN_SEGMENT_MS (--min-segment-ms)='20' is invalid: expected at least"),
    ({"SPEAKER_MIN_SEGMENT_MS": "2000", "SPEAKER_MAX_AUDIO_S": "1"}, "max_audio_s must be at least min_segment_ms"),
])
def test_settings_the_model_cannot_serve_exit_at_once_with_status_2(speaker_cache, tmp_path, settings, message):
    env = {**os.environ, "PROJECT_ROOT": str(tmp_path), "MODEL_CACHE_DIR": str(speaker_cache),
           "PYTHONUNBUFFERED": "1", **settings}
    done = subprocess.run([sys.executable, "-m", "services.speaker.server", "--port", "0"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert message in done.stderr
