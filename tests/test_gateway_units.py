"""Pure-logic parts of the gateway: audio conversion, the segment buffer, the session summary."""

from __future__ import annotations

import numpy as np
import pytest
import soxr

from gateway.audio_input import AudioConverter
from gateway.buffer import SampleBuffer
from gateway.summary import SummaryBuilder
from speech_analysis.v1 import common_pb2, gateway_pb2
from services.common.errors import InvalidInput


def test_streaming_resample_equals_whole_resample():
    rng = np.random.default_rng(1)
    audio = (rng.standard_normal(44100 * 2) * 0.1).astype(np.float32)
    converter = AudioConverter(44100, common_pb2.AUDIO_ENCODING_FLOAT32LE, 1)
    pieces = [converter.convert(audio[i:i + 997].astype("<f4").tobytes()) for i in range(0, audio.size, 997)]
    streamed = np.concatenate(pieces + [converter.finish()])
    whole = soxr.resample(audio, 44100, 16000)
    assert streamed.size == whole.size
    assert np.allclose(streamed, whole, atol=1e-5)


def test_pcm16_stereo_downmix():
    left = np.full(160, 16384, dtype=np.int16)
    right = np.zeros(160, dtype=np.int16)
    frames = np.stack([left, right], axis=1).astype("<i2").tobytes()
    out = AudioConverter(16000, common_pb2.AUDIO_ENCODING_PCM16LE, 2).convert(frames)
    assert out.dtype == np.float32 and out.shape == (160,)
    assert np.allclose(out, 0.25)


def test_partial_frame_rejected_with_frame_size():
    with pytest.raises(InvalidInput, match="4 bytes per frame"):
        AudioConverter(16000, common_pb2.AUDIO_ENCODING_PCM16LE, 2).convert(b"\0" * 6)


def test_sample_buffer_slices_and_trims():
    buffer = SampleBuffer()
    for start in range(0, 1000, 100):
        buffer.append(np.arange(start, start + 100, dtype=np.float32))
    assert np.array_equal(buffer.slice(250, 260), np.arange(250, 260, dtype=np.float32))
    buffer.trim(500)
    assert buffer.base == 500 and buffer.end == 1000
    assert np.array_equal(buffer.slice(400, 510), np.arange(500, 510, dtype=np.float32))
    buffer.trim(300)  # trimming backwards is a no-op
    assert buffer.base == 500


def _result(segment_id, start, end, text, label, probs):
    return gateway_pb2.SegmentResult(
        segment_id=segment_id, start_ms=start, end_ms=end, text=text,
        emotions=[gateway_pb2.EmotionResult(source="speechbrain", label=label, probabilities=[
            common_pb2.EmotionScore(label=k, probability=v) for k, v in probs.items()])])


def test_summary_share_is_dominant_speech_time_and_mean_probability_is_weighted():
    summary = SummaryBuilder()
    summary.add(_result(0, 0, 1000, "你好。", "hap", {"neu": 0.0, "hap": 1.0}))
    summary.add(_result(1, 2000, 5000, "再见。", "sad", {"neu": 0.45, "sad": 0.55}))
    proto = summary.to_proto(audio_ms=6000)
    by_label = {d.label: d for d in proto.emotion_distribution}
    # share: the fraction of speech time each label dominates, consistent with duration_ms
    assert {k: d.share for k, d in by_label.items()} == pytest.approx({"hap": 0.25, "neu": 0.0, "sad": 0.75})
    assert {k: d.duration_ms for k, d in by_label.items()} == {"hap": 1000, "neu": 0, "sad": 3000}
    assert sum(d.share for d in proto.emotion_distribution) == pytest.approx(1.0)
    for d in proto.emotion_distribution:
        assert d.share == pytest.approx(d.duration_ms / proto.speech_duration_ms)
    # mean_probability: duration-weighted mean probability, non-zero for "neu" that never dominates
    assert {k: d.mean_probability for k, d in by_label.items()} == pytest.approx(
        {"hap": 0.25, "neu": 0.45 * 0.75, "sad": 0.55 * 0.75})
    assert [d.label for d in proto.emotion_distribution] == ["sad", "hap", "neu"]  # largest share first
    assert proto.dominant_emotion == "sad"
    assert proto.transcript == "你好。再见。"
    assert (proto.speech_duration_ms, proto.silence_duration_ms) == (4000, 2000)


def test_summary_shares_sum_to_one_with_zero_length_segments():
    summary = SummaryBuilder()
    summary.add(_result(0, 1000, 1000, "", "hap", {"hap": 0.6, "sad": 0.4}))
    summary.add(_result(1, 2000, 2000, "", "sad", {"hap": 0.2, "sad": 0.8}))
    summary.add(_result(2, 3000, 3000, "", "sad", {"hap": 0.2, "sad": 0.8}))
    proto = summary.to_proto(audio_ms=4000)
    assert {d.label: d.share for d in proto.emotion_distribution} == pytest.approx({"sad": 2 / 3, "hap": 1 / 3})
    assert sum(d.share for d in proto.emotion_distribution) == pytest.approx(1.0)


def test_summary_joins_english_with_spaces():
    summary = SummaryBuilder()
    summary.add(_result(0, 0, 1000, "Hello.", "neu", {"neu": 1.0}))
    summary.add(_result(1, 1000, 2000, "Bye.", "neu", {"neu": 1.0}))
    assert summary.to_proto(2000).transcript == "Hello. Bye."


def test_fast_client_segments_keep_their_audio(spine_gateway):
    """Regression: a client streaming much faster than real time runs ahead of the VAD's
    events; the gateway must still hold each segment's audio when its end arrives."""
    import grpc

    from speech_analysis_client import analyze
    from speech_analysis.v1 import gateway_pb2_grpc
    from tests.conftest import read_clip

    samples, rate = read_clip("en_meeting", dtype="int16")
    with grpc.insecure_channel(spine_gateway.address) as channel:
        events = list(analyze(gateway_pb2_grpc.SpeechAnalysisServiceStub(channel), samples, rate,
                              chunk_ms=200, timeout=60))
    results = [e.segment_result for e in events if e.WhichOneof("event") == "segment_result"]
    assert len(results) == 3
    for result in results:  # silence (-120 dBFS) would mean the audio was already trimmed
        assert result.features.loudness_dbfs > -60, result


def test_summary_ignores_result_and_emotion_order():
    """Results may be added in any order, and a segment's emotions in any source order."""
    def result(segment_id, start, text, sources):
        emotions = [gateway_pb2.EmotionResult(source=source, label=label, probabilities=[
            common_pb2.EmotionScore(label=label, probability=1.0)]) for source, label in sources]
        return gateway_pb2.SegmentResult(segment_id=segment_id, start_ms=start, end_ms=start + 1000,
                                         text=text, emotions=emotions)

    forward, backward = SummaryBuilder(), SummaryBuilder()
    a = result(0, 0, "你好。", [("speechbrain", "hap"), ("sensevoice", "SAD")])
    b = result(1, 2000, "再见。", [("sensevoice", "NEUTRAL"), ("speechbrain", "ang")])
    forward.add(a), forward.add(b)
    backward.add(b), backward.add(a)
    assert forward.to_proto(4000) == backward.to_proto(4000)
    proto = forward.to_proto(4000)
    assert proto.transcript == "你好。再见。"
    assert {d.label: d.duration_ms for d in proto.emotion_distribution} == {"hap": 1000, "ang": 1000}


def test_session_limits_refuse_a_lag_that_could_stall():
    from gateway.session import SessionLimits

    with pytest.raises(ValueError, match="max_vad_lag_s"):
        SessionLimits(max_session_s=60, worker_timeout_s=5, default_mode=1, max_vad_lag_s=0.3)
    with pytest.raises(ValueError, match="max_segments_in_flight"):
        SessionLimits(max_session_s=60, worker_timeout_s=5, default_mode=1, max_segments_in_flight=0)
