"""With models on disk, loading and serving open no network connection.

Every worker runs as a real process under tests/network_guard.py, which refuses
and audits any lookup or connection beyond loopback. The shared stack (gateway,
VAD, ASR in both modes, SpeechBrain emotion) runs under it all session: here it
serves one request per model and its audit must still be empty. The backends the
stack does not load (FSMN-VAD, the speaker model) get a guarded worker of their
own; the emotion worker groups are checked in tests/test_emotion_worker.py. A
refused attempt would also surface as a failed load, so "nothing tried to reach
the network" and "everything works offline" are both checked.
"""

from __future__ import annotations

import subprocess
import sys

import grpc
import numpy as np
import pytest

from speech_analysis.v1 import common_pb2, gateway_pb2_grpc
from speech_analysis.worker.v1 import (
    asr_pb2, asr_pb2_grpc, audio_pb2, emotion_pb2, emotion_pb2_grpc, speaker_pb2, speaker_pb2_grpc, vad_pb2,
    vad_pb2_grpc)
from speech_analysis_client import analyze
from tests.conftest import read_clip
from tests.network_guard import guarded_env
from tests.procs import start_server


@pytest.fixture
def guarded(tmp_path, model_env):
    env, audit = guarded_env(tmp_path / "guard")
    return {**model_env, **env}, audit


def segment_bytes(seconds: float = 3.0) -> bytes:
    audio, _ = read_clip("zh_weather")
    return audio[8000:8000 + int(seconds * 16000)].astype("<f4").tobytes()


def test_the_guard_itself_catches_an_attempt(guarded):
    env, audit = guarded
    code = ("import urllib.request\ntry:\n urllib.request.urlopen('http://huggingface.co', timeout=2)\n"
            "except OSError: pass")
    subprocess.run([sys.executable, "-c", code], env={**env, "PATH": "/usr/bin:/bin"}, check=True, timeout=60)
    assert "huggingface.co" in audit.read_text()


def test_the_stack_serves_every_mode_offline(stack):
    samples, rate = read_clip("zh_single", dtype="int16")
    with grpc.insecure_channel(stack.gateway.address) as channel:
        events = list(analyze(gateway_pb2_grpc.SpeechAnalysisServiceStub(channel), samples, rate, timeout=120))
    assert events[-1].summary.segment_count == 1
    with grpc.insecure_channel(stack.asr.address) as channel:
        stub = asr_pb2_grpc.AsrServiceStub(channel)
        for mode in (common_pb2.ASR_MODE_PARAFORMER, common_pb2.ASR_MODE_SENSEVOICE):
            reply = stub.Transcribe(asr_pb2.TranscribeRequest(
                audio=audio_pb2.AudioChunk(samples_f32le=segment_bytes()), mode=mode), timeout=120)
            assert reply.text
    with grpc.insecure_channel(stack.emotion.address) as channel:
        reply = emotion_pb2_grpc.EmotionServiceStub(channel).Classify(emotion_pb2.ClassifyRequest(
            audio=audio_pb2.AudioChunk(samples_f32le=segment_bytes())), timeout=120)
    assert len(reply.probabilities) == 4
    assert stack.network_audit.read_text() == "", stack.network_audit.read_text()


def test_speaker_worker_offline(guarded):
    env, audit = guarded
    server = start_server("services.speaker.server", "speaker-offline", env={**env, "TORCH_THREADS": "1"})
    try:
        with grpc.insecure_channel(server.address) as channel:
            reply = speaker_pb2_grpc.SpeakerServiceStub(channel).Embed(speaker_pb2.EmbedRequest(
                audio=audio_pb2.AudioChunk(samples_f32le=segment_bytes())), timeout=120)
        assert len(reply.embedding) == 192
    finally:
        server.stop()
    assert audit.read_text() == "", audit.read_text()


def test_vad_worker_both_backends_offline(guarded):
    env, audit = guarded
    server = start_server("services.vad.server", "vad-offline", env={**env, "VAD_BACKENDS": "silero,fsmn"})
    audio = np.frombuffer(segment_bytes(5.0), dtype="<f4")
    try:
        with grpc.insecure_channel(server.address) as channel:
            stub = vad_pb2_grpc.VadServiceStub(channel)
            for backend in (common_pb2.VAD_BACKEND_SILERO, common_pb2.VAD_BACKEND_FSMN):
                requests = [vad_pb2.StreamVadRequest(config=common_pb2.VadConfig(backend=backend))] + [
                    vad_pb2.StreamVadRequest(audio=audio_pb2.AudioChunk(samples_f32le=audio[i:i + 1600].tobytes()))
                    for i in range(0, audio.size, 1600)]
                list(stub.StreamVad(iter(requests), timeout=60))
    finally:
        server.stop()
    assert audit.read_text() == "", audit.read_text()
