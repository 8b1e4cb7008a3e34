"""The whole product path with every real process and tiny random-weight models.

Random weights mean the *content* of transcripts and emotions is meaningless;
these tests check structure, ordering, plumbing and fault handling, never accuracy.
"""

from __future__ import annotations

import io
import subprocess
import sys
import threading
import time

import grpc
import pytest
import soundfile as sf

from speech_analysis_client import analyze, audio_requests
from speech_analysis.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc
from tests.audio_helpers import BOUNDARY_TOLERANCE_MS, truth_segments_ms
from tests.conftest import read_clip
from tests.procs import ROOT, sample, scrape, serving, start_server

EMOTION_LABELS = {"neu", "ang", "hap", "sad"}


def run(address, clip, config=None, **kwargs):
    samples, rate = read_clip(clip, dtype="int16")
    with grpc.insecure_channel(address) as channel:
        return list(analyze(gateway_pb2_grpc.SpeechAnalysisServiceStub(channel), samples, rate, config,
                            timeout=180, **kwargs))


def results_of(events):
    return [e.segment_result for e in events if e.WhichOneof("event") == "segment_result"]


@pytest.mark.parametrize("clip", ["zh_weather", "zh_service", "en_meeting", "zh_single"])
def test_paraformer_mode_every_clip(stack, manifest, clip):
    events = run(stack.gateway.address, clip, gateway_pb2.StreamConfig(mode=common_pb2.ASR_MODE_PARAFORMER))
    results = results_of(events)
    truth = truth_segments_ms(manifest[clip])
    assert [r.segment_id for r in results] == list(range(len(truth)))
    for result, (t_start, t_end) in zip(results, truth):
        assert not result.errors, result.errors
        assert (abs(result.start_ms - t_start) <= BOUNDARY_TOLERANCE_MS
                and abs(result.end_ms - t_end) <= BOUNDARY_TOLERANCE_MS)
        assert result.text  # the tiny model is biased to emit tokens; content is meaningless
        assert result.timestamps and all(
            result.start_ms <= ts.stream_start_ms <= ts.stream_end_ms <= result.end_ms + 100
            for ts in result.timestamps)
        (emotion,) = [e for e in result.emotions if e.source == "speechbrain"]
        assert emotion.label in EMOTION_LABELS
        assert abs(sum(p.probability for p in emotion.probabilities) - 1) < 1e-4
        assert result.features.duration_ms == result.end_ms - result.start_ms
        assert result.random_weights
    # Results arrive in segment order, each after its speech_ended event.
    kinds = [(e.WhichOneof("event"), getattr(e, e.WhichOneof("event")).segment_id) for e in events[:-1]
             if e.WhichOneof("event") in ("speech_ended", "segment_result")]
    for index in range(len(truth)):
        assert kinds.index(("speech_ended", index)) < kinds.index(("segment_result", index))
    summary = events[-1].summary
    assert events[-1].WhichOneof("event") == "summary"
    assert summary.segment_count == len(truth)
    assert summary.transcript and all(r.text in summary.transcript for r in results)
    assert summary.dominant_emotion in EMOTION_LABELS
    assert abs(sum(d.share for d in summary.emotion_distribution) - 1) < 1e-4
    assert sum(d.duration_ms for d in summary.emotion_distribution) == summary.speech_duration_ms
    assert summary.random_weights


def test_sensevoice_mode_tags_and_optional_speechbrain(stack, manifest):
    events = run(stack.gateway.address, "zh_service",
                 gateway_pb2.StreamConfig(mode=common_pb2.ASR_MODE_SENSEVOICE, language="auto", use_itn=True))
    results = results_of(events)
    assert len(results) == 2
    for result in results:
        assert not result.errors
        assert result.language and result.language_display_name
        assert result.audio_event
        assert [e.source for e in result.emotions] == ["sensevoice"]
        assert "<|" not in result.text
    with_sb = results_of(run(stack.gateway.address, "zh_single", gateway_pb2.StreamConfig(
        mode=common_pb2.ASR_MODE_SENSEVOICE, speechbrain_emotion=True)))
    assert sorted(e.source for e in with_sb[0].emotions) == ["sensevoice", "speechbrain"]


@pytest.fixture(scope="module")
def one_at_a_time_gateway(stack, queue1_asr, queue1_emotion):
    """A gateway that sends one segment at a time (MAX_SEGMENTS_IN_FLIGHT=1) to workers that
    decode one segment per model call and queue one (tests/conftest.py's ``queue1_*``,
    paraformer only).

    Paraformer's padded batches are not batch invariant (a segment's text can
    change with the segments that share its call), and which segments meet in
    the ASR queue depends on timing: an upload's segments reach it together,
    a stream's one by one (and since the VAD runs on onnxruntime they arrive
    fast enough to be batched). ASR_MAX_BATCH=1 takes timing out of the comparison.
    """
    for worker in (queue1_asr, queue1_emotion):  # launched by their fixtures, loading side by side
        serving(worker)
    gateway = start_server("gateway.server", "gateway-inflight1", env={
        "VAD_ADDRESS": stack.vad.address, "ASR_ADDRESS": queue1_asr.address, "EMOTION_ADDRESS": queue1_emotion.address,
        "WORKER_TIMEOUT_S": "60", "MAX_SEGMENTS_IN_FLIGHT": "1"})
    yield gateway
    gateway.stop()


def test_analyze_file_equals_streaming(one_at_a_time_gateway):
    samples, rate = read_clip("zh_weather")
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format="FLAC")
    streamed = results_of(run(one_at_a_time_gateway.address, "zh_weather"))
    with grpc.insecure_channel(one_at_a_time_gateway.address) as channel:
        response = gateway_pb2_grpc.SpeechAnalysisServiceStub(channel).AnalyzeFile(
            gateway_pb2.AnalyzeFileRequest(content=buffer.getvalue()), timeout=180)
    from_file = results_of(response.events)
    assert len(from_file) == len(streamed) == 3
    for a, b in zip(from_file, streamed):
        assert (a.start_ms, a.end_ms, a.text) == (b.start_ms, b.end_ms, b.text)
        assert [e.label for e in a.emotions] == [e.label for e in b.emotions]
        for pa, pb in zip(a.emotions[0].probabilities, b.emotions[0].probabilities):
            assert abs(pa.probability - pb.probability) < 1e-3


def test_summary_shares_are_dominant_speech_time(stack):
    """Issue #20 item 14: ``share`` is the fraction of speech time each label dominates, so it
    agrees with ``duration_ms`` and sums to 1; ``mean_probability`` carries the duration-weighted
    mean probability, which the segments' own probabilities reproduce."""
    samples, rate = read_clip("zh_service")
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format="WAV")
    with grpc.insecure_channel(stack.gateway.address) as channel:
        response = gateway_pb2_grpc.SpeechAnalysisServiceStub(channel).AnalyzeFile(
            gateway_pb2.AnalyzeFileRequest(content=buffer.getvalue()), timeout=180)
    results = results_of(response.events)
    summary = response.events[-1].summary
    assert len(results) >= 2 and not any(r.errors for r in results)
    speech_ms = sum(r.end_ms - r.start_ms for r in results)
    assert summary.speech_duration_ms == speech_ms
    dominant_ms, weighted = {}, {}
    for r in results:
        (emotion,) = [e for e in r.emotions if e.source == "speechbrain"]
        dominant_ms[emotion.label] = dominant_ms.get(emotion.label, 0) + r.end_ms - r.start_ms
        for p in emotion.probabilities:
            weighted[p.label] = weighted.get(p.label, 0.0) + p.probability * (r.end_ms - r.start_ms)
    by_label = {d.label: d for d in summary.emotion_distribution}
    assert {k: d.duration_ms for k, d in by_label.items() if d.duration_ms} == dominant_ms
    for label, d in by_label.items():
        assert abs(d.share - d.duration_ms / speech_ms) < 1e-6, (label, d)
        assert abs(d.mean_probability - weighted[label] / speech_ms) < 1e-4, (label, d)
    assert abs(sum(d.share for d in summary.emotion_distribution) - 1) < 1e-6
    assert abs(sum(d.mean_probability for d in summary.emotion_distribution) - 1) < 1e-4
    assert by_label[summary.dominant_emotion].duration_ms == max(dominant_ms.values())


def test_interim_results_are_bounded(stack):
    # zh_service: two segments of over 4 s (several partials each) in 11.5 s of real time
    events = run(stack.gateway.address, "zh_service", gateway_pb2.StreamConfig(interim_results=True),
                 realtime=True, chunk_ms=100)
    interim = [e.interim_result for e in events if e.WhichOneof("event") == "interim_result"]
    results = {r.segment_id: r for r in results_of(events)}
    assert interim, "expected partial results while speaking in real time"
    for partial in interim:
        segment = results[partial.segment_id]
        assert segment.start_ms < partial.end_ms <= segment.end_ms + 1100
    speech_s = sum(r.end_ms - r.start_ms for r in results.values()) / 1000
    assert len(interim) <= speech_s + len(results)
    # Each partial re-transcribes its segment from the start: they are spaced geometrically.
    for segment_id, segment in results.items():
        covered = [p.end_ms - segment.start_ms for p in interim if p.segment_id == segment_id]
        for before, after in zip(covered, covered[1:]):
            assert after >= max(before + 1000, 1.5 * before) - 1, covered


def test_text_sentiment_when_enabled(stack):
    events = run(stack.gateway.address, "zh_single", gateway_pb2.StreamConfig(text_sentiment=True))
    (result,) = results_of(events)
    assert result.sentiment.label in {"positive", "negative", "neutral"}
    assert 0 <= result.sentiment.positive_probability <= 1
    assert events[-1].summary.sentiment.label in {"positive", "negative", "neutral"}
    plain = results_of(run(stack.gateway.address, "zh_single"))
    assert not plain[0].HasField("sentiment")


def test_wrong_mode_fails_the_stream(one_at_a_time_gateway):
    with pytest.raises(grpc.RpcError) as info:  # its ASR worker serves paraformer only
        run(one_at_a_time_gateway.address, "zh_single", gateway_pb2.StreamConfig(mode=common_pb2.ASR_MODE_SENSEVOICE))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "paraformer" in info.value.details()


def test_asr_worker_killed_mid_stream_then_restarted(model_env, stack):
    """Segments analysed while ASR is down carry an ASR error; the stream completes; after
    the worker restarts on the same port a new stream succeeds without restarting the gateway."""
    asr = start_server("services.asr.server", "asr-victim", env={**model_env, "ASR_MODE": "paraformer"})
    port = asr.port
    gateway = start_server("gateway.server", "gateway-faults", env={
        "VAD_ADDRESS": stack.vad.address, "ASR_ADDRESS": asr.address,
        "EMOTION_ADDRESS": stack.emotion.address, "WORKER_TIMEOUT_S": "5"})
    try:
        events: list = []
        samples, rate = read_clip("zh_weather", dtype="int16")
        first_done = threading.Event()  # the first segment's result is in, the second has begun
        killed = threading.Event()
        hold_at = 1 + int(9.5 * 10)  # the config, then 9.5 s of audio: the middle of the second segment

        def requests():
            """Audio up to the middle of the second segment, then (held there until the worker
            is dead) the rest: as fast as the gateway takes it, no real-time wait."""
            for index, request in enumerate(audio_requests(samples, rate, gateway_pb2.StreamConfig(), 100)):
                if index == hold_at:
                    killed.wait(25)  # under the gateway's idle timeout (30 s): a slow result fails below
                yield request

        def stream():
            with grpc.insecure_channel(gateway.address) as channel:
                for event in gateway_pb2_grpc.SpeechAnalysisServiceStub(channel).Analyze(requests(), timeout=120):
                    events.append(event)
                    kinds = [e.WhichOneof("event") for e in events]
                    if "segment_result" in kinds and kinds.count("speech_started") >= 2:
                        first_done.set()

        worker = threading.Thread(target=stream)
        worker.start()
        assert first_done.wait(60), events  # kill the worker during the second segment
        asr.proc.kill()
        asr.proc.wait()
        killed.set()
        worker.join(120)
        results = results_of(events)
        assert len(results) == 3 and events[-1].WhichOneof("event") == "summary"
        assert not results[0].errors and results[0].text
        for late in results[1:]:
            assert any(err.startswith("asr:") for err in late.errors), late.errors
            assert late.emotions  # emotion still answered
        assert any(e.WhichOneof("event") == "error" for e in events)

        asr = start_server("services.asr.server", "asr-restarted",
                           env={**model_env, "ASR_MODE": "paraformer"}, args=["--port", str(port)])
        recovered = results_of(run(gateway.address, "zh_single"))
        assert recovered[0].text and not recovered[0].errors
    finally:
        gateway.stop()
        asr.stop()


def test_round_robin_over_replicas(stack, queue1_asr):
    """An address resolving to two ASR replicas (the stack's and the queue-of-one worker): the
    gateway spreads segments over both."""
    second = serving(queue1_asr)
    gateway = start_server("gateway.server", "gateway-rr", env={
        "VAD_ADDRESS": stack.vad.address,
        "ASR_ADDRESS": f"ipv4:127.0.0.1:{stack.asr.port},127.0.0.1:{second.port}",
        "EMOTION_ADDRESS": stack.emotion.address})

    def transcribed(server) -> float:
        return sample(scrape(server.metrics_port), "speech_rpcs_total", method="Transcribe", code="OK")

    try:
        before = [transcribed(second), transcribed(stack.asr)]
        for _ in range(2):
            assert all(not r.errors for r in results_of(run(
                gateway.address, "zh_weather", gateway_pb2.StreamConfig(mode=common_pb2.ASR_MODE_PARAFORMER))))
        # Both replicas served some of the six segments, and only those (a call is counted as
        # its handler finishes, just after the gateway has the answer).
        deadline = time.monotonic() + 10
        while sum(served := [transcribed(second) - before[0], transcribed(stack.asr) - before[1]]) < 6:
            assert time.monotonic() < deadline, served
            time.sleep(0.02)
        assert all(served) and sum(served) == 6, served
    finally:
        gateway.stop()


def test_client_cancel_cancels_worker_calls(stack):
    """A client that cancels mid-segment cancels the gateway's call to the worker: the
    stand-in ASR worker (tests/hung_asr_replica.py) holds the segment's Transcribe call
    and reports when its caller cancels it."""
    hung = subprocess.Popen([sys.executable, "-m", "tests.hung_asr_replica"], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    gateway = None
    try:
        gateway = start_server("gateway.server", "gateway-cancel", env={
            "VAD_ADDRESS": stack.vad.address, "ASR_ADDRESS": f"127.0.0.1:{int(hung.stdout.readline())}",
            "EMOTION_ADDRESS": stack.emotion.address, "WORKER_TIMEOUT_S": "60"})
        samples, rate = read_clip("zh_weather", dtype="int16")
        with grpc.insecure_channel(gateway.address) as channel:
            call = gateway_pb2_grpc.SpeechAnalysisServiceStub(channel).Analyze(
                audio_requests(samples, rate, gateway_pb2.StreamConfig()), timeout=60)
            assert hung.stdout.readline().strip() == "held"  # the first segment's call, in the worker
            call.cancel()
        reported_lines: list[str] = []
        reported = threading.Thread(target=lambda: reported_lines.append(hung.stdout.readline().strip()))
        reported.start()
        reported.join(30)
        assert reported_lines == ["cancelled"], "the worker's call outlived the client's stream"
        # The gateway survives and serves the next stream (its ASR answers short segments).
        with grpc.insecure_channel(gateway.address) as channel:
            events = list(gateway_pb2_grpc.SpeechAnalysisServiceStub(channel).Analyze(
                audio_requests(samples[: rate // 2], rate, gateway_pb2.StreamConfig()), timeout=30))
        assert events[-1].WhichOneof("event") == "summary"
    finally:
        hung.kill()
        hung.wait()
        if gateway is not None:
            gateway.stop()


def test_long_file_never_floods_the_workers(one_at_a_time_gateway, queue1_asr):
    """AnalyzeFile pushes a recording far faster than real time, so the VAD finds segments
    much faster than ASR/emotion take them; here the ASR worker even stalls (SIGSTOP, as a
    starved process would) while they pile up. With worker queues of one, only the gateway's
    per-stream limit (MAX_SEGMENTS_IN_FLIGHT=1) keeps every segment from a
    RESOURCE_EXHAUSTED refusal once the worker resumes."""
    import os
    import signal

    import numpy as np

    clip, rate = read_clip("en_meeting")
    copies = 6  # 63 s, 18 segments
    buffer = io.BytesIO()
    sf.write(buffer, np.concatenate([clip] * copies), rate, format="WAV", subtype="PCM_16")
    warm_up = io.BytesIO()
    sf.write(warm_up, read_clip("zh_single")[0], rate, format="WAV", subtype="PCM_16")
    with grpc.insecure_channel(one_at_a_time_gateway.address) as channel:
        stub = gateway_pb2_grpc.SpeechAnalysisServiceStub(channel)
        stub.AnalyzeFile(gateway_pb2.AnalyzeFileRequest(content=warm_up.getvalue()), timeout=60)
        os.kill(queue1_asr.proc.pid, signal.SIGSTOP)
        resume = threading.Timer(2.0, os.kill, (queue1_asr.proc.pid, signal.SIGCONT))
        resume.start()
        try:
            response = stub.AnalyzeFile(gateway_pb2.AnalyzeFileRequest(content=buffer.getvalue()),
                                        timeout=300)
        finally:
            resume.cancel()
            os.kill(queue1_asr.proc.pid, signal.SIGCONT)
    results = results_of(response.events)
    assert len(results) == 3 * copies
    assert [list(r.errors) for r in results] == [[]] * len(results)
    assert all(r.text and r.emotions for r in results)
