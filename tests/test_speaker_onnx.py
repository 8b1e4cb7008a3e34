"""SPEAKER_RUNTIME=onnx: CAM++ exported to ONNX, fbank by kaldi-native-fbank, no torch in the worker.

The tiny random-weight CAM++ fixture is exported by scripts/export_speaker_onnx.py
(once per version of the code and libraries: tests/fixture_models.py) into a
directory given to the worker as SPEAKER_ONNX_DIR. Features are compared with FunASR's own
``extract_feature`` and embeddings with the torch runtime on the speech clips
of ../shared/audio (the manifest's segments) and on synthetic audio; then a
real onnx worker process answers Embed like a torch worker, without torch.
"""

from __future__ import annotations

import concurrent.futures
import json
import shutil
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest

from scripts.fixtures.campplus import CHECKPOINT, MODEL_DIRNAME, model_dir_in_cache
from services.common.audio import SAMPLE_RATE_HZ
from services.common.memory import mapped_files
from services.speaker.engine import SpeakerEngine, SpeakerOptions, load_campplus_model
from services.speaker.onnx_runtime import MANIFEST, check_export, fbank_features, load_onnx_model
from speech_analysis.worker.v1 import audio_pb2, speaker_pb2, speaker_pb2_grpc
from tests.conftest import load_manifest, read_clip
from tests.audio_helpers import noise
from tests.fixture_models import onnx_export
from tests.procs import ROOT, start_server

EMBEDDING_TOLERANCE = 1e-4


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """The torch reference on one thread: OpenMP threads spin-waiting on a busy 2-core host
    made the torch side of these tests up to 20x slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def campplus_dir(tiny_models) -> Path:
    return model_dir_in_cache(tiny_models / "model_cache")


@pytest.fixture(scope="module")
def onnx_dir(campplus_dir) -> Path:
    return onnx_export("export_speaker_onnx.py", campplus_dir)  # cached across runs (tests/fixture_models.py)


@pytest.fixture(scope="module")
def engines(campplus_dir, onnx_dir) -> tuple[SpeakerEngine, SpeakerEngine]:
    """(torch, onnx) engines on the same model."""
    return (SpeakerEngine(load_campplus_model(campplus_dir), SpeakerOptions()),
            SpeakerEngine(load_onnx_model(onnx_dir, campplus_dir, threads=1), SpeakerOptions()))


def speech_segments() -> list[np.ndarray]:
    """Every transcribed segment of every shared clip: real speech, 1-6 s each."""
    out = []
    for name, entry in load_manifest().items():
        audio, rate = read_clip(name)
        assert rate == SAMPLE_RATE_HZ and audio.ndim == 1
        out += [audio[int(s["start"] * rate):int(s["end"] * rate)] for s in entry["segments"]]
    return out

def test_fbank_features_match_funasr_extract_feature_on_speech():
    """kaldi-native-fbank as set up here computes FunASR's CAM++ features; only float32 rounding differs."""
    import torch
    from funasr.models.campplus.utils import extract_feature

    clips = [read_clip(name)[0] for name in load_manifest()]
    for samples in clips + speech_segments()[:4] + [noise(0.2, 1)]:
        reference = extract_feature([torch.from_numpy(samples)])[0][0].numpy()
        mine = fbank_features(samples)
        assert mine.shape == reference.shape and mine.dtype == np.float32
        difference = np.abs(mine - reference)
        # Log mel energies of about -15..15; the largest differences are in near-silent bins.
        assert difference.max() < 2e-3 and difference.mean() < 2e-5, (difference.max(), difference.mean())


def test_onnx_embeddings_match_torch(engines):
    torch_engine, onnx_engine = engines
    assert onnx_engine.embedding_size == torch_engine.embedding_size == 192
    speech = speech_segments()
    long = np.concatenate([noise(2.0, 3), *speech[:3]])  # > 10 s: both embed its middle
    # (every segment length costs torch a first call: a third of the segments keeps this quick)
    for segment in [*speech[::3], noise(0.2, 4), long]:
        reference, got = torch_engine.embed(segment), onnx_engine.embed(segment)
        assert got.audio_ms == reference.audio_ms and got.embedding.dtype == np.float32
        np.testing.assert_allclose(got.embedding, reference.embedding, atol=EMBEDDING_TOLERANCE)
        assert float(got.embedding.astype(np.float64) @ reference.embedding) > 0.9999


def test_onnx_batches_give_the_same_embeddings_as_alone(engines):
    _, onnx_engine = engines
    segments = [noise(1.0, 11), noise(2.3, 12), noise(1.0, 13), noise(1.0, 14)]
    alone = [onnx_engine.embed(segment).embedding for segment in segments]
    for one, batched in zip(alone, onnx_engine.embed_batch(segments)):
        np.testing.assert_allclose(batched.embedding, one, atol=1e-5)


def test_manifest_records_features_size_and_source(onnx_dir, campplus_dir):
    manifest = json.loads((onnx_dir / MANIFEST).read_text())
    assert manifest["embedding_size"] == 192 and manifest["features"]["num_mel_bins"] == 80
    assert manifest["features"]["dither"] == 0.0 and manifest["random_weights"] is True
    assert manifest["source_files"][CHECKPOINT]["bytes"] == (campplus_dir / CHECKPOINT).stat().st_size
    assert manifest["max_abs_diff_vs_torch"] < EMBEDDING_TOLERANCE


def test_missing_or_stale_export_names_the_export_command(onnx_dir, campplus_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="export_speaker_onnx.py"):
        load_onnx_model(tmp_path, campplus_dir, threads=1)
    replaced = tmp_path / MODEL_DIRNAME  # the model was replaced after the export
    shutil.copytree(campplus_dir, replaced)
    with open(replaced / "config.yaml", "a") as config:
        config.write("\n")
    with pytest.raises(ValueError, match=r"stale .*other model files.*export_speaker_onnx\.py"):
        check_export(onnx_dir, replaced)


def test_export_refuses_an_incomplete_model_dir(campplus_dir, tmp_path):
    copy = tmp_path / MODEL_DIRNAME
    shutil.copytree(campplus_dir, copy)
    (copy / CHECKPOINT).unlink()
    done = subprocess.run([sys.executable, "scripts/export_speaker_onnx.py", "--model-dir", str(copy)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert CHECKPOINT in done.stderr and "download_models.py --speaker" in done.stderr
    assert not (copy / "onnx").exists()


# ---- worker processes --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def workers(model_env, onnx_dir):
    """{"torch": ..., "onnx": ...}: the same model in both runtimes, started in parallel."""
    env = {**model_env, "TORCH_THREADS": "1", "LOG_LEVEL": "INFO"}
    variants = {"torch": {}, "onnx": {"SPEAKER_RUNTIME": "onnx", "SPEAKER_ONNX_DIR": str(onnx_dir)}}
    with concurrent.futures.ThreadPoolExecutor(len(variants)) as pool:
        futures = {name: pool.submit(start_server, "services.speaker.server", f"speaker-{name}",
                                     env={**env, **extra}) for name, extra in variants.items()}
    servers = {name: future.result() for name, future in futures.items()}
    yield servers
    for server in servers.values():
        server.stop()


def embed(address: str, samples: np.ndarray) -> np.ndarray:
    with grpc.insecure_channel(address) as channel:
        reply = speaker_pb2_grpc.SpeakerServiceStub(channel).Embed(speaker_pb2.EmbedRequest(
            audio=audio_pb2.AudioChunk(samples_f32le=samples.astype("<f4").tobytes())), timeout=60)
    assert reply.model_info.random_weights is True and list(reply.model_info.models) == [MODEL_DIRNAME]
    return np.array(reply.embedding, dtype=np.float64)


def test_onnx_worker_answers_like_the_torch_worker_without_torch(workers):
    for segment in speech_segments()[:3] + [noise(3.0, 21)]:
        got, reference = embed(workers["onnx"].address, segment), embed(workers["torch"].address, segment)
        assert np.linalg.norm(got) == pytest.approx(1.0, abs=1e-5)
        np.testing.assert_allclose(got, reference, atol=EMBEDDING_TOLERANCE)
    files = mapped_files(workers["onnx"].proc.pid)
    assert not [f for f in files if "libtorch" in f], "SPEAKER_RUNTIME=onnx must not load torch"
    assert any("onnxruntime" in f for f in files) and any("kaldi_native_fbank" in f for f in files)
    assert any("libtorch" in f for f in mapped_files(workers["torch"].proc.pid))  # the check can fail
    assert "torch not imported: SPEAKER_RUNTIME=onnx" in workers["onnx"].log()


def test_onnx_worker_without_export_exits_naming_the_command(model_env, tmp_path):
    done = subprocess.run([sys.executable, "-m", "services.speaker.server", "--port", "0"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120,
                          env={**model_env, "PATH": "/usr/bin:/bin", "SPEAKER_RUNTIME": "onnx",
                               "SPEAKER_ONNX_DIR": str(tmp_path)})
    assert done.returncode == 1
    assert "export_speaker_onnx.py" in done.stdout + done.stderr
