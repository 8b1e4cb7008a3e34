"""Request limits a client can hit, in one place.

The gateway checks a stream's configuration against these bounds before it
opens any worker stream (so a bad request fails fast with ``INVALID_ARGUMENT``
naming the field), and the workers check the same bounds again at their own
entry (a worker may be called directly). Everything here is cheap: each check
looks at a bounded number of items before doing any per-item work, so no
request can make validation itself slow.

The bounds keep every segment small enough to travel to a worker in one gRPC
message: the longest segment is ``MAX_SPEECH_DURATION_S`` plus padding on both
sides, ~3.9 MB of float32 audio, well inside the 8 MiB default
``MAX_MESSAGE_BYTES`` (see :func:`longest_segment_bytes`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from services.common.audio import SAMPLE_RATE_HZ
from services.common.errors import InvalidInput

__all__ = [
    "MAX_HOTWORDS",
    "MAX_HOTWORD_CHARS",
    "MAX_HOTWORD_PHRASE_CHARS",
    "VadBounds",
    "VAD_BOUNDS",
    "check_vad_overrides",
    "normalise_hotwords",
    "longest_segment_bytes",
    "shorten",
]

MAX_HOTWORDS = 100
"""Most hotwords (after splitting on whitespace and removing duplicates) per stream."""
MAX_HOTWORD_CHARS = 32
"""Longest hotword, in characters."""
MAX_HOTWORD_PHRASE_CHARS = 128
"""Longest item of ``hotwords`` (one item may hold several space-separated words)."""


@dataclass(frozen=True)
class VadBounds:
    """Accepted ranges of the per-stream VAD overrides (``VadConfig``); 0 means "default"."""

    min_speech_duration_ms: int = 10_000
    min_silence_duration_ms: int = 10_000
    speech_pad_ms: int = 1_000
    min_max_speech_duration_s: float = 1.0
    max_max_speech_duration_s: float = 60.0
    """Bounds the longest segment, and with it the largest message to a worker."""


VAD_BOUNDS = VadBounds()


def _finite(name: str, value: float) -> None:
    if not math.isfinite(value):
        raise InvalidInput(f"{name} must be a finite number, got {value}")


def check_vad_overrides(*, threshold: float = 0.0, min_speech_duration_ms: int = 0,
                        min_silence_duration_ms: int = 0, speech_pad_ms: int = 0,
                        max_speech_duration_s: float = 0.0, prefix: str = "vad.") -> None:
    """Raise InvalidInput naming the first override outside :data:`VAD_BOUNDS`.

    Zero means "the worker's default" for every field, as in the proto.
    """
    b = VAD_BOUNDS
    _finite(prefix + "threshold", threshold)
    _finite(prefix + "max_speech_duration_s", max_speech_duration_s)
    if threshold and not 0.0 < threshold < 1.0:
        raise InvalidInput(f"{prefix}threshold must be between 0 and 1 (exclusive), got {threshold:g}")
    for name, value, top in (("min_speech_duration_ms", min_speech_duration_ms, b.min_speech_duration_ms),
                             ("min_silence_duration_ms", min_silence_duration_ms, b.min_silence_duration_ms),
                             ("speech_pad_ms", speech_pad_ms, b.speech_pad_ms)):
        if not 0 <= value <= top:
            raise InvalidInput(f"{prefix}{name} must be between 0 and {top}, got {value}")
    if max_speech_duration_s:
        low, high = b.min_max_speech_duration_s, b.max_max_speech_duration_s
        if not low <= max_speech_duration_s <= high:
            raise InvalidInput(f"{prefix}max_speech_duration_s must be between {low:g} and {high:g} s "
                               f"(0 = default), got {max_speech_duration_s:g}")
        if min_speech_duration_ms and max_speech_duration_s * 1000 <= min_speech_duration_ms:
            raise InvalidInput(
                f"{prefix}max_speech_duration_s ({max_speech_duration_s:g} s) must be longer than "
                f"{prefix}min_speech_duration_ms ({min_speech_duration_ms} ms): no segment could be reported")


def longest_segment_bytes() -> int:
    """Bytes of the longest segment any stream can produce, as float32 on the wire."""
    longest_s = VAD_BOUNDS.max_max_speech_duration_s + 2 * VAD_BOUNDS.speech_pad_ms / 1000
    return int(longest_s * SAMPLE_RATE_HZ) * 4


def normalise_hotwords(hotwords: "list[str] | tuple[str, ...]") -> tuple[str, ...]:
    """Validated, de-duplicated hotwords in SeACo-Paraformer's word format.

    Whitespace separates hotwords (the model takes one space-separated string),
    so a phrase with spaces becomes several words. FunASR reads a hotword
    string that ends in ``.txt`` as a file path and one starting with ``http``
    as a URL to download, so such words are refused, as are control characters.
    The item count is checked before any per-item work, and the work is linear
    in the (bounded) number of words.
    """
    if len(hotwords) > MAX_HOTWORDS:
        raise InvalidInput(f"{len(hotwords)} hotwords given; at most {MAX_HOTWORDS} are allowed")
    words: dict[str, None] = {}  # insertion-ordered set
    for item in hotwords:
        if len(item) > MAX_HOTWORD_PHRASE_CHARS:
            raise InvalidInput(f"hotword phrase {shorten(item)} is longer than {MAX_HOTWORD_PHRASE_CHARS} characters")
        for word in str(item).split():
            lowered = word.lower()
            if lowered.startswith("http") or lowered.endswith(".txt") or "/" in word or "\\" in word:
                raise InvalidInput(f"hotword {shorten(word)} looks like a URL or file path; send plain words")
            if len(word) > MAX_HOTWORD_CHARS:
                raise InvalidInput(f"hotword {shorten(word)} is longer than {MAX_HOTWORD_CHARS} characters")
            if not word.isprintable():
                raise InvalidInput(f"hotword {shorten(word)} contains control characters")
            words[word] = None
            if len(words) > MAX_HOTWORDS:
                raise InvalidInput(f"more than {MAX_HOTWORDS} hotwords given; at most {MAX_HOTWORDS} are allowed")
    return tuple(words)


def shorten(value: object, limit: int = 40) -> str:
    """``repr`` of a client-supplied value, cut to ``limit`` characters for error messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"
