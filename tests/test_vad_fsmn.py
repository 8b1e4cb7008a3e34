"""FSMN-VAD backend through the VAD worker process, with the tiny random-weight model.

The fixture FSMN was trained on synthetic audio, so its segments are not
accurate; the tests check structure: well-formed events, increasing ids,
segments inside the audio, chunk-size invariance, per-stream options, and
streams that do not disturb each other.
"""

from __future__ import annotations

import threading

import grpc
import numpy as np
import pytest

from speech_analysis.v1 import common_pb2
from speech_analysis.worker.v1 import audio_pb2, vad_pb2, vad_pb2_grpc
from tests.audio_helpers import check_progress_events
from tests.conftest import read_clip
from tests.procs import start_server


@pytest.fixture(scope="module")
def fsmn_vad_worker(model_env):
    server = start_server("services.vad.server", "vad-fsmn",
                          env={**model_env, "TORCH_THREADS": "1", "VAD_BACKENDS": "silero,fsmn"})
    yield server
    server.stop()


def requests(audio: np.ndarray, chunk_samples: int, config: common_pb2.VadConfig):
    yield vad_pb2.StreamVadRequest(config=config)
    for start in range(0, audio.size, chunk_samples):
        chunk = audio[start:start + chunk_samples].astype("<f4").tobytes()
        yield vad_pb2.StreamVadRequest(audio=audio_pb2.AudioChunk(samples_f32le=chunk))


def stream_events(address: str, audio: np.ndarray, chunk_samples: int = 1600, progress: bool = False,
                  **config) -> list:
    """(kind, message) pairs; Progress events (their timing depends on the chunk size) only
    with ``progress``. 100 ms chunks unless a test is about chunking: events do not depend
    on the chunk size (test_events_well_formed_and_chunk_size_invariant), and each chunk is a
    message and a model call."""
    config = common_pb2.VadConfig(backend=common_pb2.VAD_BACKEND_FSMN, **config)
    with grpc.insecure_channel(address) as channel:
        stub = vad_pb2_grpc.VadServiceStub(channel)
        events = [(e.WhichOneof("event"), getattr(e, e.WhichOneof("event")))
                  for e in stub.StreamVad(requests(audio, chunk_samples, config), timeout=60)]
    return events if progress else [(kind, e) for kind, e in events if kind != "progress"]


def segments(events: list) -> list[tuple[int, int, int]]:
    return [(e.segment_id, e.start_ms, e.end_ms) for kind, e in events if kind == "speech_ended"]


def check_well_formed(events: list, duration_ms: int) -> None:
    open_id = None
    ended = []
    for kind, event in events:
        if kind == "speech_started":
            assert open_id is None, events
            assert event.segment_id == len(ended)
            open_id = event.segment_id
            open_start = event.start_ms
        else:
            assert open_id == event.segment_id and event.start_ms == open_start, events
            assert 0 <= event.start_ms < event.end_ms <= duration_ms, (event, duration_ms)
            if ended:
                assert event.start_ms >= ended[-1].end_ms
            ended.append(event)
            open_id = None
    assert open_id is None


@pytest.mark.parametrize("clip", ["zh_weather", "en_meeting"])
def test_events_well_formed_and_chunk_size_invariant(fsmn_vad_worker, clip):
    audio, _ = read_clip(clip)
    duration_ms = audio.size * 1000 // 16000
    events = stream_events(fsmn_vad_worker.address, audio, chunk_samples=320)
    check_well_formed(events, duration_ms)
    assert segments(events), "the fixture FSMN should find some speech in a speech clip"
    for chunk in (1000, 16000 * 7, audio.size):
        assert stream_events(fsmn_vad_worker.address, audio, chunk_samples=chunk) == events


@pytest.mark.parametrize("clip", ["zh_weather", "en_meeting", "zh_service"])
def test_progress_events_never_release_audio_a_later_segment_needs(fsmn_vad_worker, clip):
    audio, _ = read_clip(clip)
    for chunk_samples in (320, 1600):
        events = stream_events(fsmn_vad_worker.address, audio, chunk_samples, progress=True)
        check_progress_events(events, audio.size * 1000 // 16000, max(chunk_samples / 16, 200))  # 200 ms blocks


def test_max_speech_duration_cuts_segments(fsmn_vad_worker):
    audio, _ = read_clip("zh_weather")
    events = stream_events(fsmn_vad_worker.address, audio, max_speech_duration_s=2.0)
    check_well_formed(events, audio.size * 1000 // 16000)
    assert segments(events)
    assert all(end - start <= 2000 for _, start, end in segments(events))


def test_min_speech_duration_drops_short_segments(fsmn_vad_worker):
    audio, _ = read_clip("zh_weather")
    default = segments(stream_events(fsmn_vad_worker.address, audio))
    strict = segments(stream_events(fsmn_vad_worker.address, audio, min_speech_duration_ms=4000))
    assert all(end - start >= 4000 for _, start, end in strict)
    assert len(strict) < len(default)


def test_interleaved_streams_equal_each_alone(fsmn_vad_worker):
    clips = [read_clip(name)[0] for name in ("zh_weather", "en_meeting", "zh_service")]
    alone = [stream_events(fsmn_vad_worker.address, audio) for audio in clips]
    together: dict[int, list] = {}

    def run(i):
        together[i] = stream_events(fsmn_vad_worker.address, clips[i], chunk_samples=480 + 160 * i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(clips))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert [together[i] for i in range(len(clips))] == alone


def test_silero_remains_the_default_backend(fsmn_vad_worker):
    """With FSMN-VAD loaded too, a stream that names no backend gets Silero's events."""
    audio, _ = read_clip("zh_single")

    def events(backend: int) -> list:
        with grpc.insecure_channel(fsmn_vad_worker.address) as channel:
            return list(vad_pb2_grpc.VadServiceStub(channel).StreamVad(
                requests(audio, 320, common_pb2.VadConfig(backend=backend)), timeout=60))

    def ended(events: list) -> list[tuple[int, int]]:
        return [(e.speech_ended.start_ms, e.speech_ended.end_ms) for e in events
                if e.WhichOneof("event") == "speech_ended"]

    default = events(common_pb2.VAD_BACKEND_UNSPECIFIED)
    assert ended(default)
    assert default == events(common_pb2.VAD_BACKEND_SILERO)
    assert ended(default) != ended(events(common_pb2.VAD_BACKEND_FSMN))  # FSMN-VAD is loaded, and differs


def test_fsmn_worker_loads_torch(fsmn_vad_worker):
    """The control for tests/test_vad_worker.py's torch-free check: FSMN brings torch, and the
    same /proc maps check sees it."""
    from services.common.memory import mapped_files

    assert any("libtorch" in f for f in mapped_files(fsmn_vad_worker.proc.pid))
