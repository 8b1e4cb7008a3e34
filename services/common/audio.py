"""The one internal audio type and conversions at the edges.

Inside the system audio is always a 1-D ``float32`` numpy array, mono, in
[-1, 1], at 16 kHz (:data:`SAMPLE_RATE_HZ`). On the wire between gateway and
workers it travels as little-endian float32 bytes (``AudioChunk.samples_f32le``).
Engines call :func:`check_contract` at their entry.
"""

from __future__ import annotations

import math

import numpy as np

from services.common.errors import InvalidInput

__all__ = [
    "SAMPLE_RATE_HZ",
    "samples_from_f32le",
    "samples_to_f32le",
    "check_contract",
    "loudness_dbfs",
    "peak_dbfs",
    "ms_to_samples",
    "samples_to_ms",
]

SAMPLE_RATE_HZ = 16_000
_SILENCE_DBFS = -120.0


def samples_from_f32le(data: bytes) -> np.ndarray:
    """Decode internal wire audio, rejecting malformed input."""
    if len(data) % 4:
        raise InvalidInput(f"float32 audio must be a multiple of 4 bytes, got {len(data)}")
    samples = np.frombuffer(data, dtype="<f4").astype(np.float32, copy=False)
    if samples.size and not np.isfinite(samples).all():
        raise InvalidInput("audio contains NaN or Inf samples")
    return samples


def samples_to_f32le(samples: np.ndarray) -> bytes:
    return np.ascontiguousarray(samples, dtype="<f4").tobytes()


def check_contract(samples: np.ndarray, *, min_samples: int = 0) -> np.ndarray:
    """Assert the internal audio contract; returns ``samples`` unchanged."""
    if not isinstance(samples, np.ndarray) or samples.dtype != np.float32 or samples.ndim != 1:
        raise TypeError("internal audio must be a 1-D float32 numpy array at 16 kHz")
    if samples.size < min_samples:
        raise InvalidInput(
            f"segment too short: {samples.size} samples ({samples_to_ms(samples.size)} ms); "
            f"need at least {min_samples} samples ({samples_to_ms(min_samples)} ms) at 16 kHz")
    return samples


def check_segment(samples: np.ndarray, min_samples: int) -> np.ndarray:
    """A worker's input check: the audio contract, finite samples, at least ``min_samples``."""
    if isinstance(samples, np.ndarray) and samples.size == 0:
        raise InvalidInput(f"empty audio: send at least {samples_to_ms(min_samples)} ms of float32 "
                           "mono 16 kHz samples")
    check_contract(samples, min_samples=min_samples)
    if not np.isfinite(samples).all():
        raise InvalidInput("audio contains NaN or Inf samples")
    return samples


def crop_middle(samples: np.ndarray, keep_samples: int) -> np.ndarray:
    """The middle ``keep_samples`` of ``samples`` (all of them when not longer, or keep is 0).

    A VAD segment's edges are where speech starts and trails off; its middle is the
    voice itself, so a worker that bounds its cost per segment keeps the middle."""
    if not keep_samples or samples.size <= keep_samples:
        return samples
    start = (samples.size - keep_samples) // 2
    return samples[start:start + keep_samples]


def ms_to_samples(ms: float) -> int:
    return int(round(ms * SAMPLE_RATE_HZ / 1000))


def samples_to_ms(samples: int) -> int:
    return int(round(samples * 1000 / SAMPLE_RATE_HZ))


def loudness_dbfs(samples: np.ndarray) -> float:
    """RMS level in dB relative to full scale; -120 for silence."""
    if samples.size == 0:
        return _SILENCE_DBFS
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    return max(_SILENCE_DBFS, 20 * math.log10(rms)) if rms > 0 else _SILENCE_DBFS


def peak_dbfs(samples: np.ndarray) -> float:
    if samples.size == 0:
        return _SILENCE_DBFS
    peak = float(np.max(np.abs(samples)))
    return max(_SILENCE_DBFS, 20 * math.log10(peak)) if peak > 0 else _SILENCE_DBFS
