"""With models on disk, loading and serving open no network connection.

Each worker runs as a real process with a ``sitecustomize`` module (found
through PYTHONPATH) that wraps ``socket.getaddrinfo``, ``socket.socket.connect``
and ``connect_ex``: any non-loopback lookup or connection is written to an
audit file and refused. gRPC's own sockets live in its C core and only serve
127.0.0.1 here. The test then loads every model and sends one request to
each, and requires an empty audit file. A refused attempt would also surface
as a failed load, so "nothing tried to reach the network" and "everything
works offline" are both checked.
"""

from __future__ import annotations

import textwrap

import grpc
import numpy as np
import pytest

from speech_analysis.v1 import common_pb2
from speech_analysis.worker.v1 import (
    asr_pb2, asr_pb2_grpc, audio_pb2, emotion_pb2, emotion_pb2_grpc, speaker_pb2, speaker_pb2_grpc, vad_pb2,
    vad_pb2_grpc)
from tests.conftest import read_clip
from tests.procs import ROOT, start_server

GUARD = textwrap.dedent('''
    import errno, ipaddress, os, socket

    _AUDIT = os.environ["NET_AUDIT_FILE"]
    _LOCAL_NAMES = {"localhost", "ip6-localhost", ""}

    def _is_local(host):
        if host is None or str(host) in _LOCAL_NAMES:
            return True
        try:
            return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
        except ValueError:
            return False

    def _refuse(what):
        with open(_AUDIT, "a") as audit:
            audit.write(f"{os.getpid()} {what}\\n")
        raise OSError(errno.ENETUNREACH, f"network disabled by test: {what}")

    _getaddrinfo = socket.getaddrinfo
    def getaddrinfo(host, *args, **kwargs):
        if not _is_local(host):
            _refuse(f"getaddrinfo {host}")
        return _getaddrinfo(host, *args, **kwargs)
    socket.getaddrinfo = getaddrinfo

    for _name in ("connect", "connect_ex"):
        _original = getattr(socket.socket, _name)
        def _guarded(self, address, _original=_original, _name=_name):
            if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_local(address[0]):
                _refuse(f"{_name} {address}")
            return _original(self, address)
        setattr(socket.socket, _name, _guarded)
''')


@pytest.fixture
def guarded_env(tmp_path, model_env):
    (tmp_path / "sitecustomize.py").write_text(GUARD)
    audit = tmp_path / "audit.log"
    audit.touch()
    env = {**model_env, "PYTHONPATH": f"{tmp_path}:{ROOT}", "NET_AUDIT_FILE": str(audit)}
    return env, audit


def segment_bytes(seconds: float = 3.0) -> bytes:
    audio, _ = read_clip("zh_weather")
    return audio[8000:8000 + int(seconds * 16000)].astype("<f4").tobytes()


def test_the_guard_itself_catches_an_attempt(guarded_env):
    import subprocess
    import sys

    env, audit = guarded_env
    code = ("import urllib.request\ntry:\n urllib.request.urlopen('http://huggingface.co', timeout=2)\n"
            "except OSError: pass")
    subprocess.run([sys.executable, "-c", code], env={**env, "PATH": "/usr/bin:/bin"}, check=True, timeout=60)
    assert "huggingface.co" in audit.read_text()


def test_asr_worker_both_modes_offline(guarded_env):
    env, audit = guarded_env
    server = start_server("services.asr.server", "asr-offline", env={**env, "ASR_MODE": "both"})
    try:
        with grpc.insecure_channel(server.address) as channel:
            stub = asr_pb2_grpc.AsrServiceStub(channel)
            for mode in (common_pb2.ASR_MODE_PARAFORMER, common_pb2.ASR_MODE_SENSEVOICE):
                reply = stub.Transcribe(asr_pb2.TranscribeRequest(
                    audio=audio_pb2.AudioChunk(samples_f32le=segment_bytes()), mode=mode), timeout=120)
                assert reply.text
    finally:
        server.stop()
    assert audit.read_text() == "", audit.read_text()


def test_emotion_worker_offline(guarded_env):
    env, audit = guarded_env
    server = start_server("services.emotion.server", "emotion-offline", env=env)
    try:
        with grpc.insecure_channel(server.address) as channel:
            reply = emotion_pb2_grpc.EmotionServiceStub(channel).Classify(emotion_pb2.ClassifyRequest(
                audio=audio_pb2.AudioChunk(samples_f32le=segment_bytes())), timeout=120)
        assert len(reply.probabilities) == 4
    finally:
        server.stop()
    assert audit.read_text() == "", audit.read_text()


def test_speaker_worker_offline(guarded_env):
    env, audit = guarded_env
    server = start_server("services.speaker.server", "speaker-offline", env={**env, "TORCH_THREADS": "1"})
    try:
        with grpc.insecure_channel(server.address) as channel:
            reply = speaker_pb2_grpc.SpeakerServiceStub(channel).Embed(speaker_pb2.EmbedRequest(
                audio=audio_pb2.AudioChunk(samples_f32le=segment_bytes())), timeout=120)
        assert len(reply.embedding) == 192
    finally:
        server.stop()
    assert audit.read_text() == "", audit.read_text()


def test_vad_worker_both_backends_offline(guarded_env):
    env, audit = guarded_env
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
