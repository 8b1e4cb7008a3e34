"""Gateway limits, security, files and metrics, against real gateway + VAD worker processes."""

from __future__ import annotations

import datetime
import io
import threading
import urllib.request

import grpc
import numpy as np
import pytest
import soundfile as sf
import soxr

from speech_analysis_client import analyze
from speech_analysis.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc
from tests.conftest import read_clip
from services.common.health import serving_status
from tests.procs import free_port, sample, scrape, start_server, wait_for_metric



@pytest.fixture(scope="module")
def limited_gateway(vad_worker):
    metrics_port = free_port()
    server = start_server("gateway.server", "gateway-limited", env={
        "VAD_ADDRESS": vad_worker.address, "ASR_ADDRESS": "127.0.0.1:9", "EMOTION_ADDRESS": "127.0.0.1:9",
        "MAX_SESSIONS": "1", "MAX_SESSION_S": "3", "MAX_MESSAGE_BYTES": "4000000", "MAX_FILE_BYTES": "200000",
        "IDLE_TIMEOUT_S": "3", "METRICS_PORT": str(metrics_port), "WORKER_TIMEOUT_S": "2"},
        serving_service="vad")  # no ASR worker: overall health stays NOT_SERVING
    server.metrics_port = metrics_port
    yield server
    server.stop()


def stub_for(address: str) -> tuple[grpc.Channel, gateway_pb2_grpc.SpeechAnalysisServiceStub]:
    channel = grpc.insecure_channel(address)
    return channel, gateway_pb2_grpc.SpeechAnalysisServiceStub(channel)


def config_request(**kwargs) -> gateway_pb2.AnalyzeRequest:
    base = dict(sample_rate_hz=16000, encoding=common_pb2.AUDIO_ENCODING_PCM16LE, channels=1)
    base.update(kwargs)
    return gateway_pb2.AnalyzeRequest(config=gateway_pb2.StreamConfig(**base))


def test_session_longer_than_limit_is_refused(limited_gateway):
    samples, rate = read_clip("zh_service", dtype="int16")  # 11.5 s > MAX_SESSION_S=3
    channel, stub = stub_for(limited_gateway.address)
    with channel, pytest.raises(grpc.RpcError) as info:
        list(analyze(stub, samples, rate, timeout=60))
    # It can never succeed: OUT_OF_RANGE, not RESOURCE_EXHAUSTED (which clients read as "retry later").
    assert info.value.code() == grpc.StatusCode.OUT_OF_RANGE
    assert "3 s" in info.value.details() and "MAX_SESSION_S" in info.value.details()


def test_oversized_message_is_refused(limited_gateway):
    channel, stub = stub_for(limited_gateway.address)
    with channel:
        # Over MAX_MESSAGE_BYTES (4 MB): refused by the gateway, naming the limit.
        requests = iter([config_request(), gateway_pb2.AnalyzeRequest(audio=b"\0" * 4_200_000)])
        with pytest.raises(grpc.RpcError) as info:
            list(stub.Analyze(requests, timeout=30))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "4.0 MiB" in info.value.details() and "smaller chunks" in info.value.details()
        # Over twice the limit gRPC itself refuses the message before the gateway sees it.
        requests = iter([config_request(), gateway_pb2.AnalyzeRequest(audio=b"\0" * 8_200_000)])
        with pytest.raises(grpc.RpcError) as info:
            list(stub.Analyze(requests, timeout=30))
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "larger than max" in info.value.details()


def test_concurrent_sessions_beyond_limit_are_refused(limited_gateway):
    release = threading.Event()

    def held_open():
        yield config_request()
        release.wait(30)

    channel, stub = stub_for(limited_gateway.address)
    with channel:
        first = stub.Analyze(held_open(), timeout=60)
        # The slot is taken in the same event-loop step as the RPC is counted active.
        wait_for_metric(limited_gateway.metrics_port, "speech_active_rpcs", 1, method="Analyze")
        samples, rate = read_clip("zh_single", dtype="int16")
        with pytest.raises(grpc.RpcError) as info:
            list(analyze(stub, samples, rate, timeout=30))
        release.set()
        events = list(first)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "concurrent sessions" in info.value.details()
    assert events[-1].WhichOneof("event") == "summary"
    # The slot is free again afterwards.
    channel, stub = stub_for(limited_gateway.address)
    with channel:
        assert list(analyze(stub, samples, rate, timeout=30))[-1].WhichOneof("event") == "summary"


def test_separate_channels_take_one_slot_per_channel(limited_gateway):
    samples, rate = read_clip("zh_single", dtype="int16")
    separate = gateway_pb2.StreamConfig(channel_mode=gateway_pb2.CHANNEL_MODE_SEPARATE)
    channel, stub = stub_for(limited_gateway.address)
    with channel:
        with pytest.raises(grpc.RpcError) as info:  # 2 channels, MAX_SESSIONS=1
            list(analyze(stub, np.stack([samples, samples], axis=1), rate, separate, timeout=30))
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "one per channel" in info.value.details()
        events = list(analyze(stub, samples, rate, separate, timeout=30))  # one channel: one slot
    assert events[-1].WhichOneof("event") == "summary" and len(events[-1].summary.channels) == 1


def test_metrics_endpoint(limited_gateway):
    samples, rate = read_clip("zh_single", dtype="int16")
    channel, stub = stub_for(limited_gateway.address)
    with channel:
        list(analyze(stub, samples, rate, timeout=30))
    # counted as the handler finishes, just after the client has its status
    wait_for_metric(limited_gateway.metrics_port, "speech_active_rpcs", 0, method="Analyze")
    body = urllib.request.urlopen(f"http://127.0.0.1:{limited_gateway.metrics_port}/metrics", timeout=5).read().decode()
    assert 'speech_rpcs_total{code="OK",method="Analyze",service="speech_analysis.v1.SpeechAnalysisService"}' in body
    assert "speech_active_rpcs" in body
    assert "process_resident_memory_bytes" in body
    assert 'speech_stream_duration_seconds_bucket{code="OK",le="0.1",method="Analyze"' in body


# ---- AnalyzeFile ---------------------------------------------------------------------------

def encode(samples: np.ndarray, rate: int, fmt: str, subtype: str | None = None) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def file_segments(stub, content: bytes) -> list[tuple[int, int]]:
    response = stub.AnalyzeFile(gateway_pb2.AnalyzeFileRequest(content=content), timeout=60)
    assert response.events[-1].WhichOneof("event") == "summary"
    return [(e.speech_ended.start_ms, e.speech_ended.end_ms) for e in response.events
            if e.WhichOneof("event") == "speech_ended"]


@pytest.mark.parametrize("fmt, subtype, rate, channels", [
    ("WAV", "PCM_16", 16000, 1), ("FLAC", None, 44100, 2), ("OGG", "VORBIS", 48000, 1),
    ("MP3", None, 22050, 2)])
def test_analyze_file_matches_streaming(spine_gateway, fmt, subtype, rate, channels):
    audio, _ = read_clip("en_meeting")
    channel, stub = stub_for(spine_gateway.address)
    with channel:
        streamed = [(e.speech_ended.start_ms, e.speech_ended.end_ms)
                    for e in analyze(stub, audio, 16000, timeout=60) if e.WhichOneof("event") == "speech_ended"]
        converted = soxr.resample(audio, 16000, rate)
        if channels == 2:
            converted = np.stack([converted, converted], axis=1)
        got = file_segments(stub, encode(converted, rate, fmt, subtype))
    assert len(got) == len(streamed) == 3
    # Lossless same-rate input is identical; resampled/lossy input within one VAD window or two.
    tolerance = 0 if (fmt, rate) == ("WAV", 16000) else 70
    for (s1, e1), (s2, e2) in zip(got, streamed):
        assert abs(s1 - s2) <= tolerance and abs(e1 - e2) <= tolerance, (got, streamed)


@pytest.mark.parametrize("content, needle", [
    (b"this is not audio at all" * 100, "could not decode"),
    (b"", "empty"),
])
def test_analyze_file_bad_content(spine_gateway, content, needle):
    channel, stub = stub_for(spine_gateway.address)
    with channel, pytest.raises(grpc.RpcError) as info:
        stub.AnalyzeFile(gateway_pb2.AnalyzeFileRequest(content=content), timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert needle in info.value.details()


def test_analyze_file_truncated_wav(spine_gateway):
    audio, _ = read_clip("zh_single")
    wav = encode(audio, 16000, "WAV", "PCM_16")
    channel, stub = stub_for(spine_gateway.address)
    with channel:
        with pytest.raises(grpc.RpcError) as info:  # header only: no audio at all
            stub.AnalyzeFile(gateway_pb2.AnalyzeFileRequest(content=wav[:30]), timeout=30)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        # Cut mid-data: what is there is analysed, and the summary says how long it was.
        response = stub.AnalyzeFile(gateway_pb2.AnalyzeFileRequest(content=wav[: len(wav) // 2]), timeout=30)
    summary = response.events[-1].summary
    assert 0 < summary.audio_duration_ms < 1100
    # ...and the client is told that the file held less than its header declared.
    (warning,) = [e.error for e in response.events
                  if e.WhichOneof("event") == "error" and e.error.code == "DATA_LOSS"]
    assert response.events[-2].error == warning  # just before the summary
    declared_s = audio.size / 16000
    assert f"declares {declared_s:.1f} s" in warning.message and "truncated" in warning.message


# ---- security -------------------------------------------------------------------------------

def self_signed(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_tls_and_bearer_token(vad_worker, tmp_path):
    cert, key = self_signed(tmp_path)
    # No ASR worker: the overall status stays NOT_SERVING; the VAD part is what this needs.
    server = start_server("gateway.server", "gateway-tls", tls_root_cert=cert.read_bytes(), serving_service="vad",
                          timeout_s=30,
                          env={"VAD_ADDRESS": vad_worker.address, "ASR_ADDRESS": "127.0.0.1:9",
                               "EMOTION_ADDRESS": "127.0.0.1:9", "AUTH_TOKEN": "s3cret", "TLS_CERT": str(cert),
                               "TLS_KEY": str(key)})
    try:
        credentials = grpc.ssl_channel_credentials(cert.read_bytes())
        with grpc.secure_channel(f"localhost:{server.port}", credentials) as channel:
            stub = gateway_pb2_grpc.SpeechAnalysisServiceStub(channel)
            samples, rate = read_clip("zh_single", dtype="int16")
            for metadata, needle in ((None, "missing"), ([("authorization", "Bearer wrong")], "invalid")):
                with pytest.raises(grpc.RpcError) as info:
                    list(analyze(stub, samples, rate, metadata=metadata, timeout=30))
                assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
                assert needle in info.value.details()
            events = list(analyze(stub, samples, rate, metadata=[("authorization", "Bearer s3cret")], timeout=30))
            assert events[-1].WhichOneof("event") == "summary"
        with pytest.raises(grpc.RpcError):  # TLS is required
            serving_status(server.address, timeout_s=3)
    finally:
        server.stop()


def test_fast_client_with_stalled_vad_is_held_back_and_loses_no_audio():
    """A recording streamed as fast as possible while the VAD worker stalls (SIGSTOP, as a
    starved process would): the gateway stops reading the client (MAX_VAD_LAG_S) instead of
    buffering its whole lead or dropping audio a segment still needs.

    Its own VAD worker, since this test freezes it. ASR/emotion point at closed ports, so
    segment results carry worker errors; their audio features show the audio was there.
    """
    import os
    import signal

    vad = start_server("services.vad.server", "vad-stalled")
    metrics_port = free_port()
    gateway = start_server("gateway.server", "gateway-lag", env={
        "VAD_ADDRESS": vad.address, "ASR_ADDRESS": "127.0.0.1:9", "EMOTION_ADDRESS": "127.0.0.1:9",
        "WORKER_TIMEOUT_S": "5", "MAX_VAD_LAG_S": "2", "METRICS_PORT": str(metrics_port)}, serving_service="vad")
    received_s: list[float] = []  # audio the gateway took from the client: when the VAD stops, when it resumes

    def received() -> float:
        return sample(scrape(metrics_port), "speech_audio_received_seconds_total")

    def resume_vad() -> None:
        received_s.append(received())
        os.kill(vad.proc.pid, signal.SIGCONT)

    resume = threading.Timer(1.5, resume_vad)
    try:
        clip, rate = read_clip("en_meeting", dtype="int16")  # 3 segments, 1.2 s apart across copies
        copies = 8  # 84 s: longer than any fixed buffer margin the gateway could keep
        channel, stub = stub_for(gateway.address)
        results = []
        with channel:
            for event in analyze(stub, np.concatenate([clip] * copies), rate, chunk_ms=200, timeout=120):
                kind = event.WhichOneof("event")
                if kind == "speech_ended" and not resume.is_alive() and not results:
                    os.kill(vad.proc.pid, signal.SIGSTOP)
                    received_s.append(received())
                    resume.start()
                elif kind == "segment_result":
                    results.append(event.segment_result)
        assert len(results) == 3 * copies
        for result in results:  # silence (-120 dBFS) would mean the audio was already released
            assert result.features.loudness_dbfs > -60, result
        # Held back while the VAD stood still: the client's 84 s went on only as far as the lag
        # limit + the open segment (< 4 s) + one chunk and one progress interval allow.
        stalled, resumed = received_s
        assert resumed - stalled <= 2 + 4 + 0.5, received_s
        assert resumed < clip.size * copies / rate - 10, received_s
    finally:
        resume.cancel()
        os.kill(vad.proc.pid, signal.SIGCONT)
        gateway.stop()
        vad.stop()
