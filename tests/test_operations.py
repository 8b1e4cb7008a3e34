"""Operations (issue #20): health that follows the workers, lifecycle, retries, metrics,
settings validation, reflection, the web bridge's TLS/Origin checks. Real processes on
127.0.0.1, real clients; waits are on health, metrics and stream ends, not on sleeps."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from speech_analysis.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc
from speech_analysis.worker.v1 import asr_pb2, audio_pb2, vad_pb2, vad_pb2_grpc
from tests.procs import ROOT, free_port, sample, scrape, start_server, wait_for_metric

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def wait_until(predicate, timeout_s: float, what: str, poll_s: float = 0.05):
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            value = predicate()
        except grpc.RpcError:
            value = None
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(poll_s)


# ---- 1. the gateway's health follows its workers ---------------------------------------------

def test_gateway_health_follows_its_workers(model_env):
    vad = start_server("services.vad.server", "ops-vad")
    asr_port = free_port()
    gateway = start_server("gateway.server", "ops-gateway", serving_service="vad", env={
        "VAD_ADDRESS": vad.address, "ASR_ADDRESS": f"127.0.0.1:{asr_port}", "EMOTION_ADDRESS": "127.0.0.1:9"})
    asr = None
    try:
        # VAD alone is not enough: every Analyze needs ASR too.
        assert gateway.health() == NOT_SERVING
        assert gateway.health(service="speech_analysis.v1.SpeechAnalysisService") == NOT_SERVING
        assert gateway.health(service="asr") == NOT_SERVING
        assert gateway.health(service="emotion") == NOT_SERVING
        assert gateway.health(service="liveness") == SERVING
        asr = start_server("services.asr.server", "ops-asr-late", env={**model_env, "ASR_MODE": "paraformer"},
                           args=["--port", str(asr_port)])
        wait_until(lambda: gateway.health() == SERVING, 30, "gateway SERVING once ASR is")
        assert gateway.health(service="asr") == SERVING

        vad.proc.kill()  # the VAD worker dies: the gateway must say so by itself
        vad.proc.wait()
        wait_until(lambda: gateway.health() == NOT_SERVING, 10, "gateway NOT_SERVING without VAD")
        assert gateway.health(service="vad") == NOT_SERVING
        assert gateway.health(service="asr") == SERVING
        assert gateway.health(service="liveness") == SERVING

        vad = start_server("services.vad.server", "ops-vad-back", args=["--port", str(vad.port)])
        wait_until(lambda: gateway.health() == SERVING, 30, "gateway SERVING again once VAD is back")

        asr.proc.kill()
        asr.proc.wait()
        wait_until(lambda: gateway.health() == NOT_SERVING, 10, "gateway NOT_SERVING without ASR")
        assert gateway.health(service="asr") == NOT_SERVING and gateway.health(service="vad") == SERVING
    finally:
        gateway.stop()
        vad.stop()
        if asr is not None:
            asr.stop()
    assert gateway.proc.returncode == 0, gateway.log()


# ---- 2./3. lifecycle ----------------------------------------------------------------------------

def test_sigterm_while_loading_exits_within_the_grace_period(model_env):
    asr = start_server("services.asr.server", "ops-asr-loading", wait_serving=False,
                       env={**model_env, "ASR_MODE": "paraformer", "SHUTDOWN_GRACE_S": "1"})
    try:
        assert asr.health() == NOT_SERVING  # listening, still loading its models
        started = time.monotonic()
        asr.proc.send_signal(signal.SIGTERM)
        code = asr.proc.wait(timeout=20)
        elapsed = time.monotonic() - started
    finally:
        asr.stop()
    assert code == 0, asr.log()
    assert elapsed < 4.0, f"took {elapsed:.1f} s to exit"


def test_sigterm_ends_health_watch_streams_and_exits_quietly():
    vad = start_server("services.vad.server", "ops-vad-watch", env={"SHUTDOWN_GRACE_S": "1"})
    try:
        with grpc.insecure_channel(vad.address) as channel:
            stream = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=30)
            assert next(stream).status == SERVING
            started = time.monotonic()
            vad.proc.send_signal(signal.SIGTERM)
            # The stream says NOT_SERVING, then ends cleanly (not cancelled at the end of the grace).
            assert [reply.status for reply in stream] == [NOT_SERVING]
            assert stream.code() == grpc.StatusCode.OK
        code = vad.proc.wait(timeout=20)
        elapsed = time.monotonic() - started
    finally:
        vad.stop()
    assert code == 0
    assert elapsed < 1.0 + 2.0, f"took {elapsed:.1f} s to exit"
    assert "Traceback" not in vad.log() and "CancelledError" not in vad.log(), vad.log()


# ---- 4. whole segments are retried on another replica ---------------------------------------

def test_long_segments_retry_on_the_other_replica_when_one_dies(model_env):
    from gateway.workers import Workers
    from services.common.settings import GatewaySettings

    metrics_port = free_port()
    asr = start_server("services.asr.server", "ops-asr", env={**model_env, "ASR_MODE": "paraformer"},
                       args=["--metrics-port", str(metrics_port)])
    hung = subprocess.Popen([sys.executable, "-m", "tests.hung_asr_replica"], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    try:
        hung_port = int(hung.stdout.readline())
        settings = GatewaySettings(asr_address=f"ipv4:127.0.0.1:{asr.port},127.0.0.1:{hung_port}")
        rng = np.random.default_rng(0)
        long_s = 8.0  # 512 KB of float32: twice gRPC's default retry buffer

        def segment(seconds: float) -> asr_pb2.TranscribeRequest:
            samples = (rng.standard_normal(int(16000 * seconds)) * 0.05).astype("<f4")
            return asr_pb2.TranscribeRequest(audio=audio_pb2.AudioChunk(samples_f32le=samples.tobytes()))

        async def scenario() -> list:
            workers = Workers.connect(settings)
            try:
                # Short calls until round_robin has both replicas in use (the stand-in answers
                # short ones), then long calls: some are held by the stand-in, which then dies.
                for _ in range(20):
                    await workers.asr.Transcribe(segment(0.5), timeout=30)
                calls = [asyncio.ensure_future(workers.asr.Transcribe(segment(long_s), timeout=120))
                         for _ in range(4)]
                held = await asyncio.to_thread(hung.stdout.readline)
                assert held.strip() == "held"
                hung.kill()
                return await asyncio.gather(*calls, return_exceptions=True)
            finally:
                await workers.close()

        results = asyncio.run(scenario())
        errors = [r for r in results if isinstance(r, BaseException)]
        assert not errors, [(e.code(), e.details()) if isinstance(e, grpc.RpcError) else e for e in errors]
        assert all(isinstance(r, asr_pb2.TranscribeResponse) and r.model_info.models for r in results)

        # The worker's metrics: calls by code, compute per model, random-weight models flagged.
        metrics = scrape(metrics_port)
        assert sample(metrics, "speech_rpcs_total", method="Transcribe", code="OK") >= 4
        assert sample(metrics, "speech_rpc_latency_seconds_count", method="Transcribe", code="OK") >= 4
        assert sample(metrics, "speech_model_audio_seconds_total", model="paraformer") >= 4 * long_s
        assert sample(metrics, "speech_model_compute_seconds_total", model="paraformer") > 0
        assert sample(metrics, "speech_models_info", service="asr", random_weights="true") == 1
    finally:
        hung.kill()
        hung.wait()
        asr.stop()


# ---- 7./8./13. metrics, authentication failures, reflection ---------------------------------

@pytest.fixture(scope="module")
def metered():
    vad_metrics, gateway_metrics = free_port(), free_port()
    vad = start_server("services.vad.server", "ops-vad-metrics", args=["--metrics-port", str(vad_metrics)])
    gateway = start_server("gateway.server", "ops-gateway-metrics", serving_service="vad", env={
        "VAD_ADDRESS": vad.address, "ASR_ADDRESS": "127.0.0.1:9", "EMOTION_ADDRESS": "127.0.0.1:9",
        "AUTH_TOKEN": "s3cret", "METRICS_PORT": str(gateway_metrics)})
    vad.metrics_port, gateway.metrics_port = vad_metrics, gateway_metrics
    yield vad, gateway
    gateway.stop()
    vad.stop()


def test_every_rpc_is_counted_by_its_final_code(metered):
    vad, gateway = metered
    audio = vad_pb2.StreamVadRequest(audio=audio_pb2.AudioChunk(samples_f32le=np.zeros(16000, "<f4").tobytes()))
    with grpc.insecure_channel(vad.address) as channel:
        stub = vad_pb2_grpc.VadServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:  # audio before config
            list(stub.StreamVad(iter([audio]), timeout=10))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        list(stub.StreamVad(iter([vad_pb2.StreamVadRequest(config=common_pb2.VadConfig()), audio]), timeout=10))
    vad_service = "speech_analysis.worker.v1.VadService"
    # A call is counted as its handler finishes, just after the client has its status.
    wait_for_metric(vad.metrics_port, "speech_rpcs_total", 2, service=vad_service, method="StreamVad")
    metrics = scrape(vad.metrics_port)
    assert sample(metrics, "speech_rpcs_total", service=vad_service, method="StreamVad",
                  code="INVALID_ARGUMENT") == 1
    assert sample(metrics, "speech_rpcs_total", service=vad_service, method="StreamVad", code="OK") == 1
    assert sample(metrics, "speech_stream_duration_seconds_count", method="StreamVad", code="OK") == 1
    assert sample(metrics, "speech_rpc_latency_seconds_count", method="StreamVad") == 0  # not mixed
    assert sample(metrics, "speech_model_audio_seconds_total", model="vad-silero") == 1.0  # the good stream
    assert sample(metrics, "speech_model_compute_seconds_total", model="vad-silero") > 0
    assert sample(metrics, "speech_models_info", service="vad") == 1
    assert sample(metrics, "speech_rpcs_total", service="grpc.health.v1.Health", method="Check", code="OK") >= 1

    config = gateway_pb2.AnalyzeRequest(config=gateway_pb2.StreamConfig(sample_rate_hz=16000))
    with grpc.insecure_channel(gateway.address) as channel:
        stub = gateway_pb2_grpc.SpeechAnalysisServiceStub(channel)
        for metadata in (None, [("authorization", "Bearer wrong")]):
            with pytest.raises(grpc.RpcError) as info:
                list(stub.Analyze(iter([config]), metadata=metadata, timeout=10))
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        bad = gateway_pb2.AnalyzeRequest(config=gateway_pb2.StreamConfig(sample_rate_hz=3))
        with pytest.raises(grpc.RpcError) as info:
            list(stub.Analyze(iter([bad]), metadata=[("authorization", "Bearer s3cret")], timeout=10))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    public = "speech_analysis.v1.SpeechAnalysisService"
    wait_for_metric(gateway.metrics_port, "speech_rpcs_total", 3, service=public, method="Analyze")
    metrics = scrape(gateway.metrics_port)
    assert sample(metrics, "speech_rpcs_total", service=public, method="Analyze", code="UNAUTHENTICATED") == 2
    assert sample(metrics, "speech_rpcs_total", service=public, method="Analyze", code="INVALID_ARGUMENT") == 1
    assert sample(metrics, "speech_auth_failures_total", transport="grpc", reason="missing") == 1
    assert sample(metrics, "speech_auth_failures_total", transport="grpc", reason="invalid") == 1
    assert sample(metrics, "speech_worker_serving", part="vad") == 1
    assert sample(metrics, "speech_worker_serving", part="asr") == 0


def test_sessions_report_what_users_feel(metered):
    """Per Analyze session: audio received, segments, final-result latency after the end of
    speech, and failed parts (the ASR and emotion addresses are closed ports here)."""
    from speech_analysis_client import analyze
    from tests.conftest import read_clip

    _vad, gateway = metered
    samples, rate = read_clip("en_meeting", dtype="int16")  # 3 segments
    before = scrape(gateway.metrics_port)
    with grpc.insecure_channel(gateway.address) as channel:
        events = list(analyze(gateway_pb2_grpc.SpeechAnalysisServiceStub(channel), samples, rate,
                              metadata=[("authorization", "Bearer s3cret")], timeout=60))
    after = scrape(gateway.metrics_port)

    def grew(name, **labels):
        return sample(after, name, **labels) - sample(before, name, **labels)

    results = [e for e in events if e.WhichOneof("event") == "segment_result"]
    assert len(results) == 3
    received = grew("speech_audio_received_seconds_total", mode="paraformer")
    assert received == pytest.approx(len(samples) / rate, abs=0.05)
    assert grew("speech_segments_total", mode="paraformer") == 3
    assert grew("speech_final_result_latency_seconds_count", mode="paraformer") == 3
    assert grew("speech_final_result_latency_seconds_sum", mode="paraformer") > 0
    assert grew("speech_segment_part_failures_total", part="asr", code="UNAVAILABLE") == 3
    assert grew("speech_segment_part_failures_total", part="emotion", code="UNAVAILABLE") == 3


def _reflect(address: str, **request) -> list:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        return list(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(**request)]),
                                              timeout=10))


def test_gateway_reflection_describes_the_public_api_only(metered):
    from google.protobuf import descriptor_pb2

    vad, gateway = metered
    (listing,) = _reflect(gateway.address, list_services="")
    services = {s.name for s in listing.list_services_response.service}
    assert "speech_analysis.v1.SpeechAnalysisService" in services
    assert not any(name.endswith(("VadService", "AsrService", "EmotionService")) for name in services)

    (public,) = _reflect(gateway.address, file_containing_symbol="speech_analysis.v1.SpeechAnalysisService")
    files = [descriptor_pb2.FileDescriptorProto.FromString(raw)
             for raw in public.file_descriptor_response.file_descriptor_proto]
    described = {service.name for f in files for service in f.service}
    assert described == {"SpeechAnalysisService"}, described  # imports keep their messages, lose their services
    for internal in ("speech_analysis.worker.v1.AsrService", "speech_analysis.worker.v1.VadService",
                     "speech_analysis.worker.v1.EmotionService"):
        (reply,) = _reflect(gateway.address, file_containing_symbol=internal)
        assert reply.HasField("error_response"), internal
    (worker,) = _reflect(vad.address, file_containing_symbol="speech_analysis.worker.v1.VadService")
    assert worker.HasField("file_descriptor_response")  # workers describe themselves


# ---- 10. settings ------------------------------------------------------------------------------

@pytest.mark.parametrize("module,variable,value,accepted", [
    ("services.asr.server", "ASR_MAX_BATCH", "four", "integer"),
    ("services.asr.server", "ASR_INT8", "ture", "true"),
    ("services.asr.server", "ASR_MODE", "fast", "paraformer, sensevoice, both"),
    ("services.vad.server", "VAD_BACKEND", "webrtc", "silero, fsmn"),
    ("services.vad.server", "VAD_BACKENDS", "silero,webrtc", "silero, fsmn"),
    ("services.vad.server", "VAD_BACKEND", "fsmn", "VAD_BACKENDS=silero"),
    ("gateway.server", "MAX_SESSIONS", "0", "at least 1"),
])
def test_invalid_settings_exit_naming_the_variable_and_accepted_values(module, variable, value, accepted):
    result = subprocess.run([sys.executable, "-m", module], cwd=ROOT, capture_output=True, text=True,
                            timeout=60, env={**_base_env(), variable: value})
    assert result.returncode == 2, result.stderr
    assert variable in result.stderr and accepted in result.stderr and "Traceback" not in result.stderr


def test_model_settings_are_flags_too(tmp_path):
    result = subprocess.run([sys.executable, "-m", "services.emotion.server", "--project-root", str(tmp_path),
                             "--model-cache-dir", str(tmp_path / "cache")], cwd=ROOT, capture_output=True,
                            text=True, timeout=60, env=_base_env())
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "unrecognized arguments" not in output
    assert str(tmp_path / "pretrained_models") in output  # the flag chose where the model is looked for


def _base_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k not in ("PROJECT_ROOT", "MODEL_CACHE_DIR")}


# ---- 11. the web bridge: TLS, Origin, clean errors ------------------------------------------

@pytest.fixture(scope="module")
def web_tls(tmp_path_factory):
    from tests.test_gateway_limits import self_signed

    cert, key = self_signed(tmp_path_factory.mktemp("tls"))
    web_port = free_port()
    gateway = start_server("gateway.server", "ops-gateway-web", wait_serving=False, env={
        "VAD_ADDRESS": "127.0.0.1:9", "ASR_ADDRESS": "127.0.0.1:9", "EMOTION_ADDRESS": "127.0.0.1:9",
        "WEB_PORT": str(web_port), "AUTH_TOKEN": "s3cret", "TLS_CERT": str(cert), "TLS_KEY": str(key)})
    context = ssl.create_default_context(cafile=str(cert))
    yield gateway, web_port, context
    gateway.stop()


def _ws(port: int, context, origin: str | None = "same"):
    from websockets.sync.client import connect

    if origin == "same":
        origin = f"https://localhost:{port}"
    # The web port listens on 127.0.0.1 only: connect there (not to whatever else "localhost"
    # may resolve to first, such as ::1), while Host, Origin and the certificate say localhost.
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    return connect(f"wss://localhost:{port}/ws", sock=sock, ssl=context, server_hostname="localhost",
                   origin=origin, open_timeout=30)


def test_web_port_serves_https_and_wss_only(web_tls):
    from websockets.sync.client import connect

    gateway, port, context = web_tls
    page = urllib.request.urlopen(f"https://localhost:{port}/", context=context, timeout=10)
    assert page.status == 200 and b"<html" in page.read().lower()
    with _ws(port, context) as ws:
        ws.send(json.dumps({"token": "wrong", "sampleRateHz": 16000}))
        assert json.loads(ws.recv(timeout=10))["code"] == "UNAUTHENTICATED"
    from websockets.exceptions import WebSocketException

    with pytest.raises((OSError, WebSocketException)):  # no clear-text WebSocket on the TLS port
        with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=5) as ws:
            ws.send("{}")
            ws.recv(timeout=5)


def test_web_origin_is_checked(web_tls):
    from websockets.exceptions import InvalidStatus

    _gateway, port, context = web_tls
    with pytest.raises(InvalidStatus) as info:
        _ws(port, context, origin="https://evil.example")
    assert info.value.response.status_code == 403
    # DNS rebinding: a page on a name that resolves to this host sends Origin and Host with
    # that name; same-origin on a name (not an IP or localhost) is not enough.
    import socket

    from websockets.sync.client import connect

    with pytest.raises(InvalidStatus) as info:
        connect(f"wss://attacker.example:{port}/ws", sock=socket.create_connection(("127.0.0.1", port)),
                ssl=context, server_hostname="localhost", origin=f"https://attacker.example:{port}",
                open_timeout=10)
    assert info.value.response.status_code == 403
    with _ws(port, context, origin=None) as ws:  # not a browser (no Origin): allowed
        ws.send(json.dumps({"token": "s3cret", "sampleRateHz": 3}))
        assert json.loads(ws.recv(timeout=10))["code"] == "INVALID_ARGUMENT"


@pytest.mark.parametrize("first,code", [
    ("not json", "INVALID_ARGUMENT"),
    ("[1, 2]", "INVALID_ARGUMENT"),
    (b"\x00\x01", "INVALID_ARGUMENT"),
    (json.dumps({"token": "pässwört", "sampleRateHz": 16000}), "UNAUTHENTICATED"),
    (json.dumps({"token": 42}), "UNAUTHENTICATED"),
])
def test_web_malformed_first_messages_get_clean_errors(web_tls, first, code):
    gateway, port, context = web_tls
    try:
        with _ws(port, context) as ws:
            ws.send(first)
            reply = json.loads(ws.recv(timeout=10))
    except Exception as exc:  # noqa: BLE001 - seen twice in CI: a 10 s stall; keep what the gateway said
        raise AssertionError(f"{exc!r}; gateway log:\n{gateway.log()[-4000:]}") from exc
    assert reply["type"] == "error" and reply["code"] == code, reply
    assert "Traceback" not in gateway.log()


def test_a_second_server_on_a_taken_port_fails_to_start(vad_worker):
    """gRPC's default SO_REUSEPORT would let a second process bind the same port and take
    half of the connections; the server turns it off, so the second one exits instead."""
    second = subprocess.run([sys.executable, "-m", "services.vad.server", "--port", str(vad_worker.port)],
                            cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "METRICS_PORT": "0"})
    assert second.returncode != 0
    assert f"could not bind 127.0.0.1:{vad_worker.port}" in second.stdout + second.stderr
    assert vad_worker.health() == health_pb2.HealthCheckResponse.SERVING
