"""CHANNEL_MODE_SEPARATE: one VAD stream and its own segments per channel, conversation figures.

The end-to-end tests run the real processes (the ``stack`` fixture) on a stereo
recording built from two real speech clips, one per channel, offset so that the
speakers talk over each other in places; the manifest's exact segments give the
expected per-channel segments and cross-talk.
"""

from __future__ import annotations

import io
import subprocess
import sys

import grpc
import numpy as np
import pytest
import soundfile as sf

from speech_analysis_client import analyze
from speech_analysis.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc
from gateway.audio_input import AudioConverter, validate_config
from gateway.summary import SummaryBuilder, conversation_figures, conversation_summary
from services.common.errors import InvalidInput
from tests.audio_helpers import truth_segments_ms
from tests.conftest import read_clip
from tests.procs import ROOT, start_server

# ---- conversation figures on hand-made segments ---------------------------------------------


def test_figures_of_two_speakers_with_cross_talk():
    a = [(0, 1000), (3000, 4000)]
    b = [(800, 2000), (5000, 6000)]
    figures = conversation_figures([a, b], audio_ms=7000)
    assert figures.talk_ms == [2000, 2200]
    assert figures.overlap_ms == 200  # 800-1000
    assert figures.speech_ms == 2000 + 2200 - 200
    assert figures.silence_ms == 7000 - 4000  # 2000-3000, 4000-5000, 6000-7000
    assert figures.turn_count == 3  # a -> b -> a -> b
    assert figures.talk_shares == pytest.approx([2000 / 4200, 2200 / 4200])


def test_back_channel_inside_the_other_speaker_does_not_take_the_floor():
    a = [(0, 5000), (6000, 7000)]
    b = [(1000, 1500), (2000, 2300)]  # "mm-hm" twice while a speaks
    figures = conversation_figures([a, b], audio_ms=8000)
    assert figures.turn_count == 0
    assert figures.overlap_ms == 800
    assert figures.silence_ms == 1000 + 1000


def test_figures_of_one_speaker_silence_and_empty_audio():
    figures = conversation_figures([[(0, 1000), (2000, 2500)], []], audio_ms=4000)
    assert figures.talk_ms == [1500, 0] and figures.talk_shares == [1.0, 0.0]
    assert (figures.overlap_ms, figures.silence_ms, figures.turn_count) == (0, 2500, 0)
    empty = conversation_figures([[], []], audio_ms=0)
    assert (empty.talk_ms, empty.overlap_ms, empty.silence_ms, empty.turn_count) == ([0, 0], 0, 0, 0)
    assert empty.talk_shares == [0.0, 0.0]


def test_three_channels_overlap_counts_time_not_pairs():
    figures = conversation_figures([[(0, 3000)], [(1000, 2000)], [(1500, 4000)]], audio_ms=4000)
    assert figures.overlap_ms == 2000  # 1000-3000: two or three channels at once, counted once
    assert figures.speech_ms == 4000 and figures.silence_ms == 0


def _result(segment_id: int, start_ms: int, end_ms: int, text: str, label: str) -> gateway_pb2.SegmentResult:
    return gateway_pb2.SegmentResult(
        segment_id=segment_id, start_ms=start_ms, end_ms=end_ms, text=text,
        emotions=[gateway_pb2.EmotionResult(source="speechbrain", label=label, probabilities=[
            common_pb2.EmotionScore(label=label, probability=1.0)])])


def test_conversation_summary_per_channel_and_overall():
    a, b = SummaryBuilder(), SummaryBuilder()
    a.add(_result(0, 0, 1000, "hello", "hap"))
    b.add(_result(1, 500, 2500, "hi", "ang"))
    a.add(_result(2, 3000, 4000, "bye", "hap"))
    summary = conversation_summary([a, b], audio_ms=5000)
    assert summary.segment_count == 3 and summary.transcript == "hello hi bye"
    assert summary.speech_duration_ms == 3500 and summary.silence_duration_ms == 1500  # 0-2500, 3000-4000
    assert [c.channel for c in summary.channels] == [0, 1]
    first, second = summary.channels
    assert (first.transcript, first.segment_count, first.talk_time_ms, first.dominant_emotion) == (
        "hello bye", 2, 2000, "hap")
    assert (second.transcript, second.segment_count, second.talk_time_ms, second.dominant_emotion) == (
        "hi", 1, 2000, "ang")
    assert first.talk_time_share == pytest.approx(0.5)
    assert [d.label for d in first.emotion_distribution] == ["hap"]
    conversation = summary.conversation
    assert (conversation.overlap_ms, conversation.silence_ms, conversation.turn_count) == (500, 1500, 2)
    assert conversation.silence_share == pytest.approx(0.3)


# ---- configuration and conversion -------------------------------------------------------------


def test_separate_converter_keeps_channels_and_downmix_stays_default():
    frames = np.stack([np.full(4800, 0.5, np.float32), np.full(4800, -0.25, np.float32)], axis=1)
    data = frames.astype("<f4").tobytes()
    separate = AudioConverter(16000, common_pb2.AUDIO_ENCODING_FLOAT32LE, 2, separate=True)
    out = separate.convert(data)
    assert out.shape == (4800, 2) and np.allclose(out[:, 0], 0.5) and np.allclose(out[:, 1], -0.25)
    downmix = AudioConverter(16000, common_pb2.AUDIO_ENCODING_FLOAT32LE, 2)
    assert np.allclose(downmix.convert(data), 0.125) and downmix.convert(data).ndim == 1
    resampled = AudioConverter(48000, common_pb2.AUDIO_ENCODING_FLOAT32LE, 2, separate=True)
    total = np.concatenate([resampled.convert(data), resampled.finish()])
    assert total.shape == (1600, 2)
    assert gateway_pb2.StreamConfig().channel_mode == gateway_pb2.CHANNEL_MODE_UNSPECIFIED


def test_unknown_channel_mode_is_refused():
    config = gateway_pb2.StreamConfig(sample_rate_hz=16000, encoding=common_pb2.AUDIO_ENCODING_PCM16LE,
                                      channel_mode=7)
    with pytest.raises(InvalidInput, match="channel_mode"):
        validate_config(config)


# ---- end to end on real speech -----------------------------------------------------------------

LEFT, RIGHT, RIGHT_OFFSET_S = "zh_service", "en_meeting", 5.0
SEPARATE = gateway_pb2.StreamConfig(mode=common_pb2.ASR_MODE_PARAFORMER,
                                    channel_mode=gateway_pb2.CHANNEL_MODE_SEPARATE)


def _stereo() -> tuple[np.ndarray, int]:
    left, rate = read_clip(LEFT, dtype="int16")
    right, right_rate = read_clip(RIGHT, dtype="int16")
    assert rate == right_rate
    offset = int(RIGHT_OFFSET_S * rate)
    frames = np.zeros((max(left.size, offset + right.size), 2), dtype=np.int16)
    frames[:left.size, 0] = left
    frames[offset:offset + right.size, 1] = right
    return frames, rate


def _truth(manifest) -> list[list[tuple[float, float]]]:
    shift = RIGHT_OFFSET_S * 1000
    return [truth_segments_ms(manifest[LEFT]),
            [(start + shift, end + shift) for start, end in truth_segments_ms(manifest[RIGHT])]]


def _truth_overlap_ms(truth) -> float:
    return sum(max(0.0, min(a_end, b_end) - max(a_start, b_start))
               for a_start, a_end in truth[0] for b_start, b_end in truth[1])


def _check_separate(events, manifest):
    truth = _truth(manifest)
    assert events[-1].WhichOneof("event") == "summary"
    results = [e.segment_result for e in events if e.WhichOneof("event") == "segment_result"]
    ids = [r.segment_id for r in results]
    assert sorted(ids) == list(range(len(truth[0]) + len(truth[1])))  # unique across channels
    for channel, expected in enumerate(truth):
        mine = [r for r in results if r.channel == channel]
        assert [r.segment_id for r in mine] == sorted(r.segment_id for r in mine)  # in order per channel
        assert len(mine) == len(expected), (channel, [(r.start_ms, r.end_ms) for r in mine], expected)
        for result, (start, end) in zip(mine, expected):
            assert abs(result.start_ms - start) <= 150 and abs(result.end_ms - end) <= 150, (channel, result)
            assert not result.errors and result.text and result.emotions
    channel_of = {r.segment_id: r.channel for r in results}
    for event in events[:-1]:
        kind = event.WhichOneof("event")
        if kind in ("speech_started", "speech_ended"):
            inner = getattr(event, kind)
            assert inner.channel == channel_of[inner.segment_id]
    summary = events[-1].summary
    assert [c.channel for c in summary.channels] == [0, 1]
    for channel, expected in enumerate(truth):
        own = summary.channels[channel]
        assert own.segment_count == len(expected)
        assert abs(own.talk_time_ms - sum(end - start for start, end in expected)) <= 150 * 2 * len(expected)
        assert own.transcript and own.dominant_emotion and own.emotion_distribution
    assert sum(c.talk_time_share for c in summary.channels) == pytest.approx(1, abs=1e-4)
    expected_overlap = _truth_overlap_ms(truth)
    assert expected_overlap > 3000  # the clips talk over each other twice: 5.6-8.0 s, 9.0-10.0 s
    assert abs(summary.conversation.overlap_ms - expected_overlap) <= 300, (
        summary.conversation.overlap_ms, expected_overlap, [(r.channel, r.start_ms, r.end_ms) for r in results], truth)
    assert summary.conversation.turn_count >= 1
    assert summary.segment_count == len(truth[0]) + len(truth[1])


def test_separate_channels_streaming(stack, manifest):
    frames, rate = _stereo()
    with grpc.insecure_channel(stack.gateway.address) as channel:
        events = list(analyze(gateway_pb2_grpc.SpeechAnalysisServiceStub(channel), frames, rate, SEPARATE,
                              chunk_ms=100, timeout=180))
    _check_separate(events, manifest)


def test_separate_channels_file(stack, manifest):
    frames, rate = _stereo()
    buffer = io.BytesIO()
    sf.write(buffer, frames, rate, format="WAV", subtype="PCM_16")
    config = gateway_pb2.StreamConfig()
    config.CopyFrom(SEPARATE)
    config.text_sentiment = True
    with grpc.insecure_channel(stack.gateway.address) as channel:
        response = gateway_pb2_grpc.SpeechAnalysisServiceStub(channel).AnalyzeFile(
            gateway_pb2.AnalyzeFileRequest(content=buffer.getvalue(), config=config), timeout=180)
    _check_separate(list(response.events), manifest)
    summary = response.events[-1].summary
    assert summary.sentiment.label and all(c.sentiment.label for c in summary.channels)


def test_downmix_stays_the_default(stack):
    frames, rate = _stereo()
    with grpc.insecure_channel(stack.gateway.address) as channel:
        events = list(analyze(gateway_pb2_grpc.SpeechAnalysisServiceStub(channel), frames, rate,
                              gateway_pb2.StreamConfig(mode=common_pb2.ASR_MODE_PARAFORMER), chunk_ms=100,
                              timeout=180))
    results = [e.segment_result for e in events if e.WhichOneof("event") == "segment_result"]
    assert [r.segment_id for r in results] == list(range(len(results))) and results
    assert all(r.channel == 0 for r in results)
    summary = events[-1].summary
    assert not summary.channels and not summary.HasField("conversation")
    assert summary.speech_duration_ms == sum(r.end_ms - r.start_ms for r in results)


def test_more_than_two_channels_are_refused_in_separate_mode(stack):
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros((16000, 3), dtype=np.int16), 16000, format="WAV", subtype="PCM_16")
    with grpc.insecure_channel(stack.gateway.address) as channel:
        with pytest.raises(grpc.RpcError) as info:
            gateway_pb2_grpc.SpeechAnalysisServiceStub(channel).AnalyzeFile(
                gateway_pb2.AnalyzeFileRequest(content=buffer.getvalue(), config=SEPARATE), timeout=60)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "at most 2 channels" in info.value.details()


def test_cli_separate_channels(stack, tmp_path):
    frames, rate = _stereo()
    path = tmp_path / "call.wav"
    sf.write(path, frames, rate, subtype="PCM_16")
    done = subprocess.run([sys.executable, "-m", "speech_analysis_client", str(path), "--address",
                           stack.gateway.address, "--fast", "--separate-channels"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert sum(line.startswith("ch0 ") and "speech started" in line for line in lines) == 2
    assert sum(line.startswith("ch1 ") and "speech started" in line for line in lines) == 3
    assert any(line.startswith("ch0: 2 segments") for line in lines)
    assert any(line.startswith("ch1: 3 segments") for line in lines)
    assert any(line.startswith("conversation: cross-talk 3.") for line in lines), lines[-4:]


def test_interim_results_and_segment_errors_name_their_channel(stack):
    """Interim results and a failing part's ErrorEvent carry the channel of their segment (a
    gateway whose emotion worker is unreachable, so every segment has an emotion error)."""
    gateway = start_server("gateway.server", "separate-no-emotion-gateway", env={
        "VAD_ADDRESS": stack.vad.address, "ASR_ADDRESS": stack.asr.address, "EMOTION_ADDRESS": "127.0.0.1:9",
        "WORKER_TIMEOUT_S": "10"})
    frames, rate = _stereo()
    frames = frames[:int(9.5 * rate)]  # 9.5 s of real time: over 2 s of speech open on each channel
    config = gateway_pb2.StreamConfig()
    config.CopyFrom(SEPARATE)
    config.interim_results = True
    try:
        with grpc.insecure_channel(gateway.address) as channel:
            # Real time: interim results are made while a segment is open and audio still arrives.
            events = list(analyze(gateway_pb2_grpc.SpeechAnalysisServiceStub(channel), frames, rate, config,
                                  chunk_ms=100, realtime=True, timeout=180))
    finally:
        gateway.stop()
    channel_of = {e.speech_started.segment_id: e.speech_started.channel
                  for e in events if e.WhichOneof("event") == "speech_started"}
    assert set(channel_of.values()) == {0, 1}
    interims = [e.interim_result for e in events if e.WhichOneof("event") == "interim_result"]
    errors = [e.error for e in events if e.WhichOneof("event") == "error"]
    assert {channel_of[i.segment_id] for i in interims} == {0, 1}, "interim results on both channels"
    assert all(i.channel == channel_of[i.segment_id] for i in interims)
    assert sorted(e.segment_id for e in errors) == sorted(channel_of)  # one emotion error per segment
    assert all(e.channel == channel_of[e.segment_id] and e.message.startswith("emotion:") for e in errors)
