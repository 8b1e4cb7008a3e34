"""The VAD worker through real gRPC: accuracy on real speech, concurrency, bad input."""

from __future__ import annotations

import threading

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2

from speech_analysis.v1 import common_pb2
from speech_analysis.worker.v1 import audio_pb2, vad_pb2, vad_pb2_grpc
from services.common.memory import mapped_files
from tests.audio_helpers import check_progress_events, frame_agreement, truth_segments_ms
from tests.conftest import read_clip


def vad_requests(audio: np.ndarray, chunk_samples: int = 320, config=None):
    yield vad_pb2.StreamVadRequest(config=config or common_pb2.VadConfig())
    for start in range(0, audio.size, chunk_samples):
        chunk = audio[start:start + chunk_samples].astype("<f4").tobytes()
        yield vad_pb2.StreamVadRequest(audio=audio_pb2.AudioChunk(samples_f32le=chunk))


def stream_segments(address: str, audio: np.ndarray, config=None) -> list[tuple[int, int]]:
    with grpc.insecure_channel(address) as channel:
        stub = vad_pb2_grpc.VadServiceStub(channel)
        events = list(stub.StreamVad(vad_requests(audio, config=config), timeout=60))
    return [(e.speech_ended.start_ms, e.speech_ended.end_ms) for e in events
            if e.WhichOneof("event") == "speech_ended"]


@pytest.mark.parametrize("clip", ["zh_weather", "zh_service", "en_meeting", "zh_single"])
def test_progress_events_never_release_audio_a_later_segment_needs(vad_worker, clip):
    audio, _ = read_clip(clip)
    for chunk_samples in (320, 1600):
        with grpc.insecure_channel(vad_worker.address) as channel:
            stub = vad_pb2_grpc.VadServiceStub(channel)
            events = [(e.WhichOneof("event"), getattr(e, e.WhichOneof("event")))
                      for e in stub.StreamVad(vad_requests(audio, chunk_samples), timeout=60)]
        check_progress_events(events, audio.size * 1000 // 16000, chunk_samples / 16)


@pytest.mark.parametrize("clip", ["zh_weather", "zh_service", "en_meeting", "zh_single"])
def test_segments_match_manifest_in_20ms_chunks(vad_worker, manifest, clip):
    audio, rate = read_clip(clip)
    assert rate == 16000
    entry = manifest[clip]
    got = stream_segments(vad_worker.address, audio)
    truth = truth_segments_ms(entry)
    assert len(got) == len(truth), (got, truth)
    assert frame_agreement(got, truth, entry["duration"] * 1000) >= 0.95
    for (start, end), (t_start, t_end) in zip(got, truth):
        assert abs(start - t_start) <= 150 and abs(end - t_end) <= 150, (got, truth)


def test_concurrent_streams_are_independent(vad_worker):
    clips = ["zh_weather", "en_meeting", "zh_service", "zh_weather"]
    audios = [read_clip(c)[0] for c in clips]
    alone = [stream_segments(vad_worker.address, a) for a in audios]
    results: dict[int, list] = {}

    def run(i):
        results[i] = stream_segments(vad_worker.address, audios[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(audios))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert [results[i] for i in range(len(audios))] == alone


def test_per_stream_options_override(vad_worker):
    audio, _ = read_clip("zh_weather")
    merged = stream_segments(vad_worker.address, audio, common_pb2.VadConfig(min_silence_duration_ms=2000))
    assert len(merged) == 1


def test_audio_before_config_is_invalid(vad_worker):
    with grpc.insecure_channel(vad_worker.address) as channel:
        stub = vad_pb2_grpc.VadServiceStub(channel)
        requests = iter([vad_pb2.StreamVadRequest(audio=audio_pb2.AudioChunk(samples_f32le=b"\0" * 8))])
        with pytest.raises(grpc.RpcError) as info:
            list(stub.StreamVad(requests, timeout=10))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "config" in info.value.details()


@pytest.mark.parametrize("payload, needle", [(b"\0" * 6, "multiple of 4"),
                                             (np.array([np.nan], "<f4").tobytes(), "NaN")])
def test_malformed_audio_is_invalid(vad_worker, payload, needle):
    with grpc.insecure_channel(vad_worker.address) as channel:
        stub = vad_pb2_grpc.VadServiceStub(channel)
        requests = iter([vad_pb2.StreamVadRequest(config=common_pb2.VadConfig()),
                         vad_pb2.StreamVadRequest(audio=audio_pb2.AudioChunk(samples_f32le=payload))])
        with pytest.raises(grpc.RpcError) as info:
            list(stub.StreamVad(requests, timeout=10))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert needle in info.value.details()


def test_bad_threshold_is_invalid(vad_worker):
    audio, _ = read_clip("zh_single")
    with pytest.raises(grpc.RpcError) as info:
        stream_segments(vad_worker.address, audio, common_pb2.VadConfig(threshold=3.0))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_health_and_reflection(vad_worker):
    from grpc_health.v1 import health_pb2
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    assert vad_worker.health() == health_pb2.HealthCheckResponse.SERVING
    with grpc.insecure_channel(vad_worker.address) as channel:
        services = ProtoReflectionDescriptorDatabase(channel).get_services()
    assert "speech_analysis.worker.v1.VadService" in services


# ---- torch-free Silero (VAD_BACKENDS=silero, the default) ------------------------------------

def test_silero_only_worker_never_loads_torch(vad_worker):
    """A process that imported torch maps libtorch*.so (the FSMN worker in
    tests/test_vad_fsmn.py shows the same check sees it); this one maps onnxruntime instead."""
    assert vad_worker.health() == health_pb2.HealthCheckResponse.SERVING  # loaded and warmed up
    files = mapped_files(vad_worker.proc.pid)
    assert not [f for f in files if "libtorch" in f or "/torch/" in f], sorted(files)
    assert any("onnxruntime" in f for f in files)


def test_backend_not_loaded_is_failed_precondition_naming_the_setting(vad_worker):
    audio, _ = read_clip("zh_single")
    with pytest.raises(grpc.RpcError) as info:
        stream_segments(vad_worker.address, audio, common_pb2.VadConfig(backend=common_pb2.VAD_BACKEND_FSMN))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "VAD_BACKENDS" in info.value.details() and "fsmn" in info.value.details()
    assert stream_segments(vad_worker.address, audio)  # the worker still serves Silero


@pytest.mark.parametrize("clip", ["zh_weather", "zh_service", "en_meeting", "zh_single"])
def test_worker_segments_identical_to_torch_silero(vad_worker, clip):
    """The worker (onnxruntime) gives exactly the segments the TorchScript Silero gives."""
    from services.vad.engine import SileroStream, SpeechEnded, VadOptions
    from services.vad.silero_torch import load_silero_torch
    from tests.conftest import ROOT

    audio, _ = read_clip(clip)
    stream = SileroStream(load_silero_torch(ROOT), VadOptions())
    events = [e for start in range(0, audio.size, 320) for e in stream.accept(audio[start:start + 320])]
    events += stream.flush()
    reference = [(e.start_ms, e.end_ms) for e in events if isinstance(e, SpeechEnded)]
    assert reference
    assert stream_segments(vad_worker.address, audio) == reference
