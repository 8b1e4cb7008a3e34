"""Silero streaming engine, in-process: chunking invariance, per-stream state, options,
and the ONNX runtime (what the worker serves) against the TorchScript reference."""

from __future__ import annotations

import numpy as np
import pytest

from services.common.errors import InvalidInput
from services.vad.engine import SileroStream, SpeechEnded, SpeechStarted, VadOptions, load_silero
from services.vad.silero_torch import load_silero_torch
from tests.conftest import ROOT, SHARED_AUDIO, load_manifest, read_clip


@pytest.fixture(scope="module")
def silero():
    return load_silero(ROOT)


@pytest.fixture(scope="module")
def silero_torch():
    return load_silero_torch(ROOT)


def test_worker_runtime_is_onnx(silero):
    assert "onnxruntime" in silero.source


@pytest.mark.parametrize("clip", sorted(load_manifest()))
def test_onnx_segments_identical_to_torch_on_every_shared_clip(silero, silero_torch, clip):
    """Same events (ids, start and end in ms) from onnxruntime as from the TorchScript model,
    with default options and with options that make more boundaries."""
    audio, _ = read_clip(clip)
    for options in (VadOptions(), VadOptions(threshold=0.3, min_silence_duration_ms=100,
                                             max_speech_duration_s=3.0)):
        onnx_events = run_stream(silero, audio, 320, options)
        torch_events = run_stream(silero_torch, audio, 320, options)
        assert onnx_events == torch_events, (clip, options)
    assert segments(onnx_events)


def test_every_shared_clip_is_compared():
    wavs = {path.name for path in SHARED_AUDIO.glob("*.wav")}
    assert wavs == {entry["file"] for entry in load_manifest().values()}


def test_onnx_probabilities_close_to_torch(silero, silero_torch):
    audio, _ = read_clip("en_meeting")
    windows = audio[: audio.size // 512 * 512].reshape(-1, 512)
    onnx_state, torch_state = silero.initial_state(), silero_torch.initial_state()
    worst = 0.0
    for window in windows:
        p_onnx, *onnx_state = silero.step(window, *onnx_state)
        p_torch, *torch_state = silero_torch.step(window, *torch_state)
        worst = max(worst, abs(p_onnx - p_torch))
    assert worst < 1e-3, worst


def run_stream(model, audio: np.ndarray, chunk: int, options: VadOptions | None = None):
    stream = SileroStream(model, options or VadOptions())
    events = []
    for start in range(0, audio.size, chunk):
        events += stream.accept(audio[start:start + chunk])
    return events + stream.flush()


def segments(events):
    return [(e.start_ms, e.end_ms) for e in events if isinstance(e, SpeechEnded)]


@pytest.mark.parametrize("clip", ["zh_weather", "en_meeting"])
def test_chunk_size_does_not_change_segments(silero, clip):
    audio, _ = read_clip(clip)
    reference = segments(run_stream(silero, audio, 512))
    assert reference
    for chunk in (160, 1000, 16000):
        got = segments(run_stream(silero, audio, chunk))
        assert len(got) == len(reference), chunk
        for (s1, e1), (s2, e2) in zip(got, reference):
            assert abs(s1 - s2) <= 32 and abs(e1 - e2) <= 32, (chunk, got, reference)


def test_interleaved_streams_match_each_alone(silero):
    """Two streams sharing one model, fed alternately, give the events each gives alone."""
    a, _ = read_clip("zh_weather")
    b, _ = read_clip("en_meeting")
    alone_a, alone_b = run_stream(silero, a, 320), run_stream(silero, b, 320)
    stream_a, stream_b = SileroStream(silero, VadOptions()), SileroStream(silero, VadOptions())
    got_a, got_b = [], []
    for start in range(0, max(a.size, b.size), 320):
        if start < a.size:
            got_a += stream_a.accept(a[start:start + 320])
        if start < b.size:
            got_b += stream_b.accept(b[start:start + 320])
    got_a += stream_a.flush()
    got_b += stream_b.flush()
    assert got_a == alone_a
    assert got_b == alone_b


def test_start_precedes_end_with_consistent_ids(silero):
    audio, _ = read_clip("zh_service")
    events = run_stream(silero, audio, 320)
    for i in range(0, len(events), 2):
        start, end = events[i], events[i + 1]
        assert isinstance(start, SpeechStarted) and isinstance(end, SpeechEnded)
        assert start.segment_id == end.segment_id == i // 2
        assert start.start_ms == end.start_ms < end.end_ms


def test_max_speech_duration_splits_long_segments(silero):
    audio, _ = read_clip("zh_weather")
    ends = segments(run_stream(silero, audio, 512, VadOptions(max_speech_duration_s=2.0)))
    assert len(ends) > 3
    assert all(end - start <= 2000 + 32 for start, end in ends)


def test_longer_min_silence_merges_segments(silero):
    audio, _ = read_clip("zh_weather")
    merged = segments(run_stream(silero, audio, 512, VadOptions(min_silence_duration_ms=2000)))
    assert len(merged) == 1


def test_silence_gives_no_events(silero):
    assert run_stream(silero, np.zeros(48000, dtype=np.float32), 512) == []


def test_bad_options_and_audio_rejected(silero):
    with pytest.raises(InvalidInput):
        VadOptions(threshold=1.5)
    with pytest.raises(TypeError):
        SileroStream(silero, VadOptions()).accept(np.zeros(10, dtype=np.float64))
