"""Speaker labels through the gateway: per-speaker summaries, refusals, and the real path.

The clustering itself is tested on synthetic embeddings in
tests/test_speaker_clustering.py. Here the end-to-end tests run the real
processes (the stack's workers, a real speaker worker on the tiny random-weight
CAM++ fixture, a gateway with SPEAKER_ADDRESS) on real speech: random weights
carry no identity, so they check structure (every long segment labelled, labels
numbered by first appearance, the summary adding up), not who spoke.
"""

from __future__ import annotations

import io

import grpc
import numpy as np
import pytest
import soundfile as sf

from speech_analysis_client import analyze, analyze_file
from speech_analysis.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc
from gateway.summary import SummaryBuilder, conversation_summary, speaker_conversation
from tests.conftest import read_clip
from tests.procs import start_server
from tests.test_cli import run_cli

LABELS = gateway_pb2.SpeakerLabelConfig(enabled=True)


def _result(segment_id: int, start_ms: int, end_ms: int, text: str, label: str,
            speaker: int) -> gateway_pb2.SegmentResult:
    return gateway_pb2.SegmentResult(
        segment_id=segment_id, start_ms=start_ms, end_ms=end_ms, text=text, speaker=speaker,
        emotions=[gateway_pb2.EmotionResult(source="speechbrain", label=label, probabilities=[
            common_pb2.EmotionScore(label=label, probability=1.0)])])


# ---- summaries on hand-made segments ----------------------------------------------------------


def test_summary_per_speaker_and_turns_between_speakers():
    builder = SummaryBuilder()
    for result in (_result(0, 0, 2000, "你好", "hap", 1), _result(1, 2500, 3500, "喂", "ang", 2),
                   _result(2, 4000, 4300, "嗯", "neu", 0),  # unknown speaker: in no speaker's entry
                   _result(3, 5000, 7000, "再见", "hap", 1)):
        builder.add(result)
    summary = builder.to_proto(audio_ms=8000)
    speaker_conversation(builder, summary)
    assert [s.speaker for s in summary.speakers] == [1, 2]
    first, second = summary.speakers
    assert (first.transcript, first.segment_count, first.talk_time_ms, first.dominant_emotion) == (
        "你好再见", 2, 4000, "hap")
    assert (second.transcript, second.segment_count, second.talk_time_ms, second.dominant_emotion) == (
        "喂", 1, 1000, "ang")
    assert (first.talk_time_share, second.talk_time_share) == pytest.approx((0.8, 0.2))
    assert summary.segment_count == 4 and summary.transcript == "你好喂嗯再见"
    conversation = summary.conversation
    assert conversation.turn_count == 2  # 1 -> 2 -> 1
    assert conversation.overlap_ms == 0
    assert conversation.silence_ms == summary.silence_duration_ms == 8000 - 5300  # the unknown one is speech
    assert conversation.silence_share == pytest.approx(2700 / 8000)


def test_speakers_are_joined_across_channels():
    left, right = SummaryBuilder(), SummaryBuilder()
    left.add(_result(0, 0, 1000, "hello", "hap", 1))
    right.add(_result(1, 500, 2500, "hi", "ang", 2))
    right.add(_result(2, 3000, 4000, "it's me again", "hap", 1))  # speaker 1 heard on the other channel
    summary = conversation_summary([left, right], audio_ms=5000)
    assert [(s.speaker, s.segment_count, s.talk_time_ms) for s in summary.speakers] == [(1, 2, 2000), (2, 1, 2000)]
    assert summary.speakers[0].transcript == "hello it's me again"
    assert [c.channel for c in summary.channels] == [0, 1]  # the conversation stays over channels
    assert summary.conversation.overlap_ms == 500


def test_no_speakers_without_labels():
    builder = SummaryBuilder()
    builder.add(_result(0, 0, 1000, "hello", "hap", 0))
    summary = builder.to_proto(audio_ms=2000)
    assert not summary.speakers and not summary.HasField("conversation")


# ---- refusals ------------------------------------------------------------------------------------


def _config(**speaker_labels) -> gateway_pb2.StreamConfig:
    return gateway_pb2.StreamConfig(sample_rate_hz=16000, encoding=common_pb2.AUDIO_ENCODING_PCM16LE,
                                    speaker_labels=gateway_pb2.SpeakerLabelConfig(**speaker_labels))


@pytest.mark.parametrize("speaker_labels, code, words", [
    (dict(enabled=True), grpc.StatusCode.FAILED_PRECONDITION, "SPEAKER_ADDRESS"),
    (dict(enabled=True, max_speakers=33), grpc.StatusCode.INVALID_ARGUMENT, "max_speakers"),
    (dict(similarity_threshold=1.5), grpc.StatusCode.INVALID_ARGUMENT, "similarity_threshold"),
], ids=["no speaker worker", "too many speakers", "threshold out of range"])
def test_speaker_label_requests_are_refused_with_the_right_code(spine_gateway, speaker_labels, code, words):
    audio = np.zeros(1600, dtype=np.int16)
    with grpc.insecure_channel(spine_gateway.address) as channel:
        stub = gateway_pb2_grpc.SpeechAnalysisServiceStub(channel)
        with pytest.raises(grpc.RpcError) as streamed:
            list(analyze(stub, audio, 16000, _config(**speaker_labels), timeout=30))
        buffer = io.BytesIO()
        sf.write(buffer, audio, 16000, format="WAV", subtype="PCM_16")
        with pytest.raises(grpc.RpcError) as whole:
            analyze_file(stub, buffer.getvalue(), _config(**speaker_labels), timeout=30)
    for error in (streamed.value, whole.value):
        assert error.code() == code and words in error.details(), error.details()


# ---- end to end on real speech ------------------------------------------------------------------


@pytest.fixture(scope="module")
def speaker_worker(model_env):
    server = start_server("services.speaker.server", "speaker", env=model_env)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def speaker_gateway(stack, speaker_worker):
    server = start_server("gateway.server", "speaker-gateway", env={
        "VAD_ADDRESS": stack.vad.address, "ASR_ADDRESS": stack.asr.address,
        "EMOTION_ADDRESS": stack.emotion.address, "SPEAKER_ADDRESS": speaker_worker.address,
        "WORKER_TIMEOUT_S": "30"}, serving_service="speaker")
    yield server
    server.stop()


def _conversation_audio() -> tuple[np.ndarray, int]:
    """Three recordings (two voices) one after another, 1.5 s of silence between them."""
    parts = []
    for name in ("zh_weather", "en_meeting", "zh_service"):
        samples, rate = read_clip(name, dtype="int16")
        assert rate == 16000
        parts += [samples, np.zeros(int(1.5 * rate), dtype=np.int16)]
    return np.concatenate(parts), 16000


def _check_labels(events, max_speakers: int) -> list[gateway_pb2.SegmentResult]:
    assert events[-1].WhichOneof("event") == "summary"
    results = [e.segment_result for e in events if e.WhichOneof("event") == "segment_result"]
    assert len(results) == 8  # the manifest's 3 + 3 + 2 segments
    for result in results:
        assert not result.errors and result.text and result.emotions, result
        assert result.random_weights  # the tiny CAM++ has random weights too
        if result.end_ms - result.start_ms >= 1000:
            assert result.speaker >= 1, result  # long segments always get a speaker
    labels = [r.speaker for r in results if r.speaker]
    assert labels and labels[0] == 1
    seen = 0
    for label in labels:  # numbered in order of first appearance, never above max_speakers
        assert 1 <= label <= min(seen + 1, max_speakers)
        seen = max(seen, label)
    summary = events[-1].summary
    assert [s.speaker for s in summary.speakers] == sorted(set(labels))
    assert sum(s.segment_count for s in summary.speakers) == len(labels)
    assert sum(s.talk_time_share for s in summary.speakers) == pytest.approx(1, abs=1e-4)
    for speaker in summary.speakers:
        own = [r for r in results if r.speaker == speaker.speaker]
        assert speaker.talk_time_ms == sum(r.end_ms - r.start_ms for r in own)
        assert speaker.transcript and speaker.dominant_emotion
    changes = sum(1 for a, b in zip(labels, labels[1:]) if a != b)
    assert summary.conversation.turn_count == changes
    assert summary.conversation.silence_ms == summary.silence_duration_ms
    return results


def test_speaker_labels_streaming(speaker_gateway):
    audio, rate = _conversation_audio()
    config = gateway_pb2.StreamConfig(speaker_labels=LABELS, mode=common_pb2.ASR_MODE_PARAFORMER)
    with grpc.insecure_channel(speaker_gateway.address) as channel:
        events = list(analyze(gateway_pb2_grpc.SpeechAnalysisServiceStub(channel), audio, rate, config,
                              chunk_ms=100, timeout=180))
    _check_labels(events, max_speakers=8)


def test_speaker_labels_file_with_one_speaker_allowed(speaker_gateway):
    audio, rate = _conversation_audio()
    buffer = io.BytesIO()
    sf.write(buffer, audio, rate, format="WAV", subtype="PCM_16")
    config = gateway_pb2.StreamConfig(speaker_labels=gateway_pb2.SpeakerLabelConfig(enabled=True, max_speakers=1))
    with grpc.insecure_channel(speaker_gateway.address) as channel:
        events = analyze_file(gateway_pb2_grpc.SpeechAnalysisServiceStub(channel), buffer.getvalue(), config,
                              timeout=180)
    results = _check_labels(events, max_speakers=1)
    assert {r.speaker for r in results} <= {0, 1}
    assert events[-1].summary.conversation.turn_count == 0


def test_speaker_labels_are_off_by_default(speaker_gateway):
    audio, rate = _conversation_audio()
    with grpc.insecure_channel(speaker_gateway.address) as channel:
        events = list(analyze(gateway_pb2_grpc.SpeechAnalysisServiceStub(channel), audio, rate,
                              chunk_ms=100, timeout=180))
    results = [e.segment_result for e in events if e.WhichOneof("event") == "segment_result"]
    assert len(results) == 8 and all(r.speaker == 0 and not r.errors for r in results)
    assert not events[-1].summary.speakers and not events[-1].summary.HasField("conversation")


def test_speaker_labels_unique_across_separate_channels(speaker_gateway):
    left, _ = read_clip("zh_service", dtype="int16")
    right, _ = read_clip("en_meeting", dtype="int16")
    frames = np.zeros((max(left.size, right.size), 2), dtype=np.int16)
    frames[:left.size, 0], frames[:right.size, 1] = left, right
    config = gateway_pb2.StreamConfig(speaker_labels=LABELS, channel_mode=gateway_pb2.CHANNEL_MODE_SEPARATE)
    with grpc.insecure_channel(speaker_gateway.address) as channel:
        events = list(analyze(gateway_pb2_grpc.SpeechAnalysisServiceStub(channel), frames, 16000, config,
                              chunk_ms=100, timeout=180))
    results = [e.segment_result for e in events if e.WhichOneof("event") == "segment_result"]
    assert {r.channel for r in results} == {0, 1}
    labels = [r.speaker for r in results if r.speaker]
    assert labels and min(labels) == 1 and max(labels) <= len(results)
    summary = events[-1].summary
    assert sum(s.segment_count for s in summary.speakers) == len(labels)
    assert [c.channel for c in summary.channels] == [0, 1]


def test_a_failing_speaker_worker_costs_only_the_labels(stack, speaker_gateway):
    """A gateway whose speaker worker is unreachable: the stream still completes, each segment
    with its transcript and emotion, speaker 0 and an error naming the speaker part."""
    gateway = start_server("gateway.server", "dead-speaker-gateway", env={
        "VAD_ADDRESS": stack.vad.address, "ASR_ADDRESS": stack.asr.address,
        "EMOTION_ADDRESS": stack.emotion.address, "SPEAKER_ADDRESS": "127.0.0.1:9",
        "WORKER_TIMEOUT_S": "10"})
    try:
        samples, rate = read_clip("zh_service", dtype="int16")
        with grpc.insecure_channel(gateway.address) as channel:
            events = list(analyze(gateway_pb2_grpc.SpeechAnalysisServiceStub(channel), samples, rate,
                                  gateway_pb2.StreamConfig(speaker_labels=LABELS), chunk_ms=100, timeout=120))
    finally:
        gateway.stop()
    results = [e.segment_result for e in events if e.WhichOneof("event") == "segment_result"]
    errors = [e.error for e in events if e.WhichOneof("event") == "error"]
    assert len(results) == 2
    for result in results:
        assert result.speaker == 0 and result.text and result.emotions
        assert [e.split(":")[0] for e in result.errors] == ["speaker"], result.errors
    assert {(e.code, e.message.split(":")[0]) for e in errors} == {("UNAVAILABLE", "speaker")}
    assert events[-1].WhichOneof("event") == "summary" and not events[-1].summary.speakers


def test_the_cli_asks_for_and_prints_speakers(speaker_gateway, tmp_path):
    audio, rate = _conversation_audio()
    path = tmp_path / "conversation.wav"
    sf.write(path, audio, rate, subtype="PCM_16")
    done = run_cli(str(path), "--address", speaker_gateway.address, "--fast", "--speakers", "2")
    assert done.returncode == 0, done.stderr
    segments = [line.strip() for line in done.stdout.splitlines() if line.strip().startswith("segment ")]
    assert len(segments) == 8
    # "segment 3 speaker 1 4.20-6.10s: ..." for a labelled segment
    labels = {int(line.split()[3]) for line in segments if line.split()[2] == "speaker"}
    assert 1 in labels and labels <= {1, 2}
    speaker_lines = [line for line in done.stdout.splitlines() if line.startswith("speaker ")]
    assert sorted(line.split(":")[0] for line in speaker_lines) == [f"speaker {n}" for n in sorted(labels)]
    refused = run_cli(str(path), "--address", speaker_gateway.address, "--speakers", "40")
    assert refused.returncode == 2 and "--speakers" in refused.stderr
