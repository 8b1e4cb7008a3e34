"""Gateway + VAD worker as real processes: streaming segments, audio conversion, bad configs."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import grpc
import numpy as np
import pytest
import soxr
from grpc_health.v1 import health_pb2

from speech_analysis_client import analyze
from speech_analysis.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc
from tests.audio_helpers import truth_segments_ms
from tests.conftest import read_clip
from tests.procs import ROOT, free_port, start_server, wait_for_serving


def segments_of(events) -> list[tuple[int, int]]:
    return [(e.speech_ended.start_ms, e.speech_ended.end_ms) for e in events
            if e.WhichOneof("event") == "speech_ended"]


def run(address, samples, rate, config=None, **kwargs):
    with grpc.insecure_channel(address) as channel:
        return list(analyze(gateway_pb2_grpc.SpeechAnalysisServiceStub(channel), samples, rate, config,
                            timeout=120, **kwargs))


def assert_matches_manifest(got, entry, tolerance_ms=150):
    truth = truth_segments_ms(entry)
    assert len(got) == len(truth), (got, truth)
    for (start, end), (t_start, t_end) in zip(got, truth):
        assert abs(start - t_start) <= tolerance_ms and abs(end - t_end) <= tolerance_ms, (got, truth)


@pytest.mark.parametrize("clip", ["zh_weather", "zh_service", "en_meeting", "zh_single"])
def test_every_clip_yields_manifest_segments(spine_gateway, manifest, clip):
    samples, rate = read_clip(clip, dtype="int16")
    events = run(spine_gateway.address, samples, rate)
    assert_matches_manifest(segments_of(events), manifest[clip])
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds[-1] == "summary"
    assert kinds.count("speech_started") == kinds.count("speech_ended") == kinds.count("segment_result")
    summary = events[-1].summary
    assert summary.segment_count == len(manifest[clip]["segments"])
    assert abs(summary.audio_duration_ms - manifest[clip]["duration"] * 1000) <= 20
    assert len({e.session_id for e in events}) == 1


@pytest.mark.parametrize("rate, channels, dtype", [(8000, 1, "int16"), (44100, 2, "int16"), (48000, 1, "float32")])
def test_other_rates_channels_and_encodings(spine_gateway, manifest, rate, channels, dtype):
    """Audio is converted once at the edge: resampled, downmixed, decoded."""
    audio, _ = read_clip("zh_service")
    converted = soxr.resample(audio, 16000, rate).astype(np.float32)
    if channels == 2:
        converted = np.stack([converted, converted * 0.5], axis=1)
    if dtype == "int16":
        converted = (np.clip(converted, -1, 1) * 32767).astype(np.int16)
    assert_matches_manifest(segments_of(run(spine_gateway.address, converted, rate)), manifest["zh_service"])


def test_segment_results_report_missing_workers_and_features(spine_gateway):
    samples, rate = read_clip("zh_single", dtype="int16")
    results = [e.segment_result for e in run(spine_gateway.address, samples, rate)
               if e.WhichOneof("event") == "segment_result"]
    assert len(results) == 1
    result = results[0]
    assert any(err.startswith("asr: UNAVAILABLE") for err in result.errors), result.errors
    assert result.features.duration_ms == result.end_ms - result.start_ms
    assert -60 < result.features.loudness_dbfs < 0


def raw_stream(address, requests, timeout=30):
    with grpc.insecure_channel(address) as channel:
        return list(gateway_pb2_grpc.SpeechAnalysisServiceStub(channel).Analyze(iter(requests), timeout=timeout))


def config(**kwargs):
    base = dict(sample_rate_hz=16000, encoding=common_pb2.AUDIO_ENCODING_PCM16LE, channels=1)
    base.update(kwargs)
    return gateway_pb2.AnalyzeRequest(config=gateway_pb2.StreamConfig(**base))


BAD_STREAMS = {
    "no config first": ([gateway_pb2.AnalyzeRequest(audio=b"\0\0" * 160)], "StreamConfig"),
    "empty stream": ([], "empty stream"),
    "sample rate 0": ([config(sample_rate_hz=0)], "sample_rate_hz"),
    "sample rate 1": ([config(sample_rate_hz=1)], "sample_rate_hz"),
    "sample rate 10^6": ([config(sample_rate_hz=1_000_000)], "sample_rate_hz"),
    "unspecified encoding": ([config(encoding=0)], "encoding"),
    "unknown encoding": ([config(encoding=7)], "encoding"),
    "three channels": ([config(channels=3)], "channels"),
    "odd PCM16 byte count": ([config(), gateway_pb2.AnalyzeRequest(audio=b"\0" * 321)], "whole number of frames"),
    "NaN floats": ([config(encoding=common_pb2.AUDIO_ENCODING_FLOAT32LE),
                    gateway_pb2.AnalyzeRequest(audio=np.array([0.1, np.nan], "<f4").tobytes())], "NaN"),
    "Inf floats": ([config(encoding=common_pb2.AUDIO_ENCODING_FLOAT32LE),
                    gateway_pb2.AnalyzeRequest(audio=np.array([np.inf] * 4, "<f4").tobytes())], "Inf"),
    "second config": ([config(), config()], "only the first"),
    "unknown language": ([config(language="xx")], "language"),
}


@pytest.mark.parametrize("name", list(BAD_STREAMS))
def test_bad_stream_is_invalid_argument_and_others_unaffected(spine_gateway, manifest, name):
    requests, needle = BAD_STREAMS[name]
    samples, rate = read_clip("zh_single", dtype="int16")
    good: dict = {}
    worker = threading.Thread(target=lambda: good.update(events=run(spine_gateway.address, samples, rate)))
    worker.start()
    with pytest.raises(grpc.RpcError) as info:
        raw_stream(spine_gateway.address, requests)
    worker.join(60)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    assert needle in info.value.details()
    assert_matches_manifest(segments_of(good["events"]), manifest["zh_single"])


def test_gateway_serving_only_once_vad_is(tmp_path):
    """Health tells the truth: the gateway's VAD part is NOT_SERVING until its VAD worker is
    SERVING (and with no ASR worker at all the gateway as a whole never is)."""
    vad_port = free_port()
    gateway = start_server("gateway.server", "gateway-health", wait_serving=False,
                           env={"VAD_ADDRESS": f"127.0.0.1:{vad_port}", "ASR_ADDRESS": "127.0.0.1:9"})
    vad = None
    try:
        assert gateway.health(service="vad") == health_pb2.HealthCheckResponse.NOT_SERVING
        vad = start_server("services.vad.server", "vad-late", args=["--port", str(vad_port)])
        wait_for_serving(gateway, time.monotonic() + 30, "vad")
        assert gateway.health(service="vad") == health_pb2.HealthCheckResponse.SERVING
        assert gateway.health() == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        gateway.stop()
        if vad:
            vad.stop()
    assert gateway.proc.returncode == 0, gateway.log()


def test_gateway_does_not_import_torch():
    code = "import sys, gateway.server, speech_analysis_client.cli; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
