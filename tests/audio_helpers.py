"""Test audio: random test signals, and comparing detected speech with the manifest's exact boundaries."""

from __future__ import annotations

import numpy as np

from services.common.audio import SAMPLE_RATE_HZ

FRAME_MS = 10
BOUNDARY_TOLERANCE_MS = 150
"""How far a detected segment boundary may be from the manifest's exact one, end to end."""


def noise(seconds: float, seed: int) -> np.ndarray:
    """``seconds`` of seeded Gaussian noise (0.1 RMS), float32 mono 16 kHz: audio of any length."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(int(round(seconds * SAMPLE_RATE_HZ))) * 0.1).astype(np.float32)


def speech_mask(segments_ms: list[tuple[float, float]], duration_ms: float) -> np.ndarray:
    """Boolean speech/non-speech per 10 ms frame."""
    frames = int(duration_ms // FRAME_MS)
    mask = np.zeros(frames, dtype=bool)
    centers = (np.arange(frames) + 0.5) * FRAME_MS
    for start, end in segments_ms:
        mask |= (centers >= start) & (centers < end)
    return mask


def frame_agreement(detected_ms, truth_ms, duration_ms) -> float:
    return float(np.mean(speech_mask(detected_ms, duration_ms) == speech_mask(truth_ms, duration_ms)))


def truth_segments_ms(entry: dict) -> list[tuple[float, float]]:
    return [(seg["start"] * 1000, seg["end"] * 1000) for seg in entry["segments"]]


def check_progress_events(events: list, duration_ms: int, step_ms: float) -> None:
    """The VAD worker's Progress contract, on ``(kind, message)`` pairs in stream order.

    Progress comes at least every 250 ms of audio (plus one ``step_ms``: the larger of
    the chunk size and the backend's processing block), ``processed_ms``
    only grows and never passes the audio sent, and no segment reported after a
    Progress event starts before that event's ``keep_from_ms`` (the client drops
    the audio before it).
    """
    progress = [e for kind, e in events if kind == "progress"]
    assert len(progress) >= duration_ms // (250 + step_ms) - 1, (len(progress), duration_ms)
    processed = [p.processed_ms for p in progress]
    assert processed == sorted(set(processed)) and processed[-1] <= duration_ms
    released = 0  # highest keep_from_ms so far
    for kind, event in events:
        if kind == "progress":
            assert event.keep_from_ms <= event.processed_ms
            released = max(released, event.keep_from_ms)
        else:
            assert event.start_ms >= released, (kind, event.start_ms, released)
    assert released > 0
