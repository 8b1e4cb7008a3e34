"""The gateway's per-session audio buffer: only what a future segment can still need."""

from __future__ import annotations

import numpy as np

__all__ = ["SampleBuffer"]


class SampleBuffer:
    """Append-only 16 kHz audio with a moving start: memory holds only what may still be cut."""

    def __init__(self) -> None:
        self._chunks: list[np.ndarray] = []
        self.base = 0   # stream sample index of the first kept sample
        self.end = 0    # stream sample index after the last sample
        self.peak = 0   # most samples ever held at once

    def append(self, samples: np.ndarray) -> None:
        if samples.size:
            self._chunks.append(samples)
            self.end += samples.size
            self.peak = max(self.peak, self.end - self.base)

    def slice(self, start: int, stop: int) -> np.ndarray:
        start, stop = max(start, self.base), min(stop, self.end)
        if stop <= start:
            return np.zeros(0, dtype=np.float32)
        joined = np.concatenate(self._chunks) if len(self._chunks) > 1 else self._chunks[0]
        self._chunks = [joined]
        return joined[start - self.base: stop - self.base].copy()

    def trim(self, before: int) -> None:
        """Drop samples before stream index ``before``."""
        before = min(before, self.end)
        if before <= self.base:
            return
        joined = np.concatenate(self._chunks) if len(self._chunks) > 1 else (
            self._chunks[0] if self._chunks else np.zeros(0, dtype=np.float32))
        self._chunks = [joined[before - self.base:]]
        self.base = before
