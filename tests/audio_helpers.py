"""Helpers to compare detected speech with the manifest's exact boundaries."""

from __future__ import annotations

import numpy as np

FRAME_MS = 10


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
