"""Speech emotion classification of finished segments: windowing and batching.

The engine wraps any :class:`WindowClassifier` (equal-length float32 windows in,
class probabilities out): SpeechBrain's wav2vec2 IEMOCAP model
(``services/emotion/speechbrain.py``), emotion2vec+ (``emotion2vec.py``) or the
ONNX export (``onnx_runtime.py``).

Long segments are classified in windows (:func:`plan_windows`): every window
is exactly ``window_s`` long, consecutive windows overlap by at least
``window_overlap_s``, and the segment's probabilities are the average of the
windows' probabilities weighted by window length. Cost is therefore linear in
the segment length and memory is bounded by one model call
(``max_batch_audio_s`` of audio), however long the segment.

Batching never pads. wav2vec2-base cannot see past zero padding: the
wrapper layer-normalises the whole padded waveform, the first conv layer's
GroupNorm takes its statistics over all time steps (padding included), the
release's ``encode_batch`` gives the encoder no lengths at all, and the
pooling rounds relative lengths to frames. Measured on the fixture, padding a
1 s segment to 2 s moves its probabilities by ~0.03. So one model call only
ever holds windows of identical length (the full windows of long segments
always are; short segments batch with segments of the same length), and a
result never depends on what else was in the batch.

Usage::

    model = load_speechbrain_model(Path("pretrained_models/emotion-recognition-wav2vec2-IEMOCAP"))
    engine = EmotionEngine(model, EmotionOptions())
    engine.warm_up()
    result = engine.classify(samples)          # float32 mono 16 kHz
    results = engine.classify_batch([a, b])   # one entry per segment, an exception for a bad one
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np

from services.common.audio import SAMPLE_RATE_HZ, check_segment, crop_middle, ms_to_samples
from services.common.batching import chunked
from services.common.emotion_labels import DISPLAY_NAMES as _SHARED_DISPLAY_NAMES
from services.common.errors import InvalidInput
from services.common.memory import trim_heap

__all__ = [
    "DISPLAY_NAMES",
    "EmotionOptions",
    "EmotionScore",
    "EmotionResult",
    "WindowClassifier",
    "EmotionEngine",
    "plan_windows",
]

log = logging.getLogger(__name__)

#: Display names of every class label (services/common/emotion_labels.py; other labels
#: are shown as they are).
DISPLAY_NAMES = _SHARED_DISPLAY_NAMES

@dataclass(frozen=True)
class EmotionOptions:
    """How segments are cut into model calls."""

    window_s: float = 10.0
    """Segments longer than this are classified in windows of exactly this length."""
    window_overlap_s: float = 2.0
    """Minimum overlap of consecutive windows (windows are spread evenly, so it can be more)."""
    single_window_max_s: float = 15.0
    """Segments up to this long are classified whole, in one window. Cutting a segment just
    over ``window_s`` into two full windows would cost twice its length (a 10.2 s segment:
    20 s of audio through the model); up to 1.5 x ``window_s`` one window is cheaper, and
    beyond it the overlap costs at most a third extra."""
    min_segment_ms: int = 100
    """Shorter segments are rejected (InvalidInput). wav2vec2 needs 25 ms for a single
    20 ms frame; below ~5 frames the pooled embedding says nothing, and the VAD never
    emits speech shorter than 250 ms."""
    max_batch_audio_s: float = 10.0
    """Most audio (summed over windows) in one model call, except that a segment up to
    ``single_window_max_s`` is always one call of its own. Bounds activation memory:
    wav2vec2-base needs ~12 MB of activations per second of audio in a call (its
    first conv layer alone makes 512 x 3200 floats per second), while on CPU two
    10 s windows in one call run no faster than one after the other. Short
    equal-length segments still share a call up to this total."""
    max_audio_s: float = 0.0
    """0: every sample of a segment is classified. Otherwise a longer segment is classified
    on its middle ``max_audio_s`` seconds only (windowed as above if that is still longer
    than ``single_window_max_s``): bounds the compute per segment, for small hosts, at the
    cost of ignoring the rest of a long utterance."""

    def __post_init__(self) -> None:
        if self.window_s <= 0:
            raise ValueError(f"window_s must be > 0, got {self.window_s}")
        if not 0 <= self.window_overlap_s < self.window_s:
            raise ValueError(f"window_overlap_s must be in [0, window_s), got {self.window_overlap_s}")
        if self.single_window_max_s < self.window_s:
            raise ValueError(f"single_window_max_s must be >= window_s, got {self.single_window_max_s}")
        if self.min_segment_ms <= 0 or ms_to_samples(self.min_segment_ms) > self.window_s * SAMPLE_RATE_HZ:
            raise ValueError(f"min_segment_ms must be in (0, window_s], got {self.min_segment_ms}")
        if self.max_batch_audio_s <= 0:
            raise ValueError(f"max_batch_audio_s must be > 0, got {self.max_batch_audio_s}")
        if self.max_audio_s < 0 or (self.max_audio_s and ms_to_samples(self.min_segment_ms)
                                    > self.max_audio_s * SAMPLE_RATE_HZ):
            raise ValueError(f"max_audio_s must be 0 (off) or at least min_segment_ms, got {self.max_audio_s}")

    @property
    def window_samples(self) -> int:
        return int(round(self.window_s * SAMPLE_RATE_HZ))

    @property
    def single_window_max_samples(self) -> int:
        return int(round(self.single_window_max_s * SAMPLE_RATE_HZ))

    @property
    def overlap_samples(self) -> int:
        return int(round(self.window_overlap_s * SAMPLE_RATE_HZ))

    @property
    def min_segment_samples(self) -> int:
        return ms_to_samples(self.min_segment_ms)

    @property
    def max_audio_samples(self) -> int:
        """0: no cropping."""
        return int(round(self.max_audio_s * SAMPLE_RATE_HZ))


@dataclass(frozen=True)
class EmotionScore:
    label: str
    display_name: str
    probability: float


@dataclass(frozen=True)
class EmotionResult:
    """One segment's classification."""

    label: str
    display_name: str
    confidence: float
    """Probability of ``label``."""
    scores: tuple[EmotionScore, ...]
    """Every class in the model's label order; probabilities sum to 1."""
    windows: int
    """Analysis windows the segment was split into (1 up to ``window_s``)."""
    compute_ms: float
    """Wall time of the model calls this segment's windows took part in (shared calls count in full)."""


class WindowClassifier(Protocol):
    """A model that turns equal-length windows into class probabilities."""

    labels: tuple[str, ...]
    batch_invariant: bool
    """Whether a window's result is independent of the other windows in its call. Not so
    with dynamic int8 quantization: activations are quantized with one scale per call."""

    def predict(self, windows: np.ndarray) -> np.ndarray:
        """(batch, samples) float32 -> (batch, classes) probabilities, rows summing to 1."""
        ...


def plan_windows(n_samples: int, options: EmotionOptions) -> list[tuple[int, int]]:
    """``(start, end)`` sample ranges covering a segment of ``n_samples``.

    Up to ``single_window_max_s`` the whole segment is one window. Longer segments get
    ``1 + ceil((n - window) / (window - overlap))`` windows of exactly
    ``window_s``, starts spread evenly from 0 to ``n - window``: the first
    starts at the segment's start, the last ends at its end, and neighbours
    overlap by at least ``window_overlap_s``. A 60 s segment with the defaults
    (10 s, 2 s) gets 8 windows.
    """
    window = options.window_samples
    if n_samples <= options.single_window_max_samples:
        return [(0, n_samples)]
    step = window - options.overlap_samples
    count = 1 + math.ceil((n_samples - window) / step)
    span = n_samples - window
    starts = [round(i * span / (count - 1)) for i in range(count)]
    return [(start, start + window) for start in starts]


class EmotionEngine:
    """Classifies segments with a shared, read-only model; safe to call from one thread at a time."""

    def __init__(self, model: WindowClassifier, options: EmotionOptions):
        self.model = model
        self.options = options
        self.labels = tuple(model.labels)
        self.display_names = tuple(DISPLAY_NAMES.get(label, label) for label in self.labels)

    def classify(self, samples: np.ndarray) -> EmotionResult:
        result = self.classify_batch([samples])[0]
        if isinstance(result, Exception):
            raise result
        return result

    def classify_batch(self, segments: Sequence[np.ndarray]) -> list[EmotionResult | Exception]:
        """One result per segment, in order; an invalid segment gets its exception instead."""
        results: list[EmotionResult | Exception | None] = [None] * len(segments)
        windows: dict[int, list[tuple[int, int, int]]] = defaultdict(list)  # length -> (segment, start, end)
        counts = [0] * len(segments)
        segments = list(segments)
        for index, samples in enumerate(segments):
            try:
                check_segment(samples, self.options.min_segment_samples)
            except InvalidInput as exc:
                results[index] = exc
                continue
            samples = segments[index] = crop_middle(samples, self.options.max_audio_samples)
            plan = plan_windows(samples.size, self.options)
            counts[index] = len(plan)
            for start, end in plan:
                windows[end - start].append((index, start, end))

        weighted = np.zeros((len(segments), len(self.labels)), dtype=np.float64)
        weights = np.zeros(len(segments), dtype=np.float64)
        compute_s = np.zeros(len(segments), dtype=np.float64)
        max_samples = int(self.options.max_batch_audio_s * SAMPLE_RATE_HZ)
        for length, group in windows.items():
            # Equal lengths only: no padding, so a result never depends on its batch
            # (and one window per call where the model itself is not batch invariant).
            per_call = max(1, max_samples // length) if self.model.batch_invariant else 1
            for chunk in chunked(group, per_call):
                batch = np.stack([segments[index][start:end] for index, start, end in chunk])
                started = time.perf_counter()
                probabilities = self.model.predict(batch)
                elapsed = time.perf_counter() - started
                for (index, _start, _end), row in zip(chunk, probabilities):
                    weighted[index] += length * row
                    weights[index] += length
                for index in {index for index, _start, _end in chunk}:
                    compute_s[index] += elapsed

        # Activations of the calls above were freed into glibc's arenas, which keep
        # them (~100 MB after a 10 s window); ~20 ms per call to hand them back.
        trim_heap()
        for index in range(len(segments)):
            if results[index] is None:
                results[index] = self._result(weighted[index] / weights[index], counts[index],
                                              compute_s[index] * 1000.0)
        return results  # type: ignore[return-value]

    def _result(self, probabilities: np.ndarray, windows: int, compute_ms: float) -> EmotionResult:
        probabilities = probabilities / probabilities.sum()
        best = int(np.argmax(probabilities))
        scores = tuple(EmotionScore(label, name, float(p))
                       for label, name, p in zip(self.labels, self.display_names, probabilities))
        return EmotionResult(self.labels[best], self.display_names[best], float(probabilities[best]),
                             scores, windows, compute_ms)

    def warm_up(self) -> None:
        """One short call so the first request does not pay for lazy initialisation
        (and every weight page of a memory-mapped checkpoint is read once)."""
        noise = (np.random.default_rng(0).standard_normal(SAMPLE_RATE_HZ) * 0.01).astype(np.float32)
        started = time.perf_counter()
        self.classify(noise)
        log.info("emotion model warmed up in %.0f ms", (time.perf_counter() - started) * 1000)
