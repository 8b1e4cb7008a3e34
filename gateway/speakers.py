"""Speaker labels: incremental clustering of one stream's speaker embeddings.

The speaker worker turns each finished segment into a unit-length embedding
(CAM++). :class:`SpeakerClusterer` labels the segments of one stream, in
segment order, as they finish::

    speakers = SpeakerClusterer(SpeakerOptions.from_config(config.speaker_labels))
    label = speakers.assign(embedding, duration_ms)   # 1, 2, ... in order of first appearance

Each speaker is a centroid (a unit vector) and a weight (milliseconds of
speech behind it). A segment joins the speaker whose centroid is most similar
(cosine) if that similarity reaches ``similarity_threshold``; otherwise it
starts a new speaker, or joins the most similar one once ``max_speakers``
exist. A segment shorter than ``min_new_speaker_ms`` never starts a speaker: a
short segment's embedding is too noisy to found a voice on, so one that is
like no known speaker gets label 0 (unknown) instead of a guess; a new
speaker's first words are often short ("喂?"), and a wrong guess there would
also pull a centroid toward the wrong voice. Joining moves the centroid toward the
segment by the segment's share of the weight, and the weight stops growing at
``centroid_memory_ms``, so a centroid follows a voice that drifts slowly over a
long call (tiredness, a new microphone position) instead of freezing on the
first minutes.

State and cost per segment are bounded by ``max_speakers`` x the embedding
size (32 x 192 floats at most), whatever the stream's length. Labels are
final: a segment is labelled once, when it finishes, and never relabelled
(offline diarization, which sees the whole recording, can do better on
recordings; this is the price of labelling as the segments happen).

Hand-written rather than a library's: scikit-learn's and FunASR's clustering
(``funasr.models.campplus.cluster_backend``, spectral/UMAP) cluster a whole
recording at once and would relabel every segment each time one is added.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from speech_analysis.v1 import gateway_pb2
from services.common.errors import InvalidInput

__all__ = ["SpeakerOptions", "SpeakerClusterer", "DEFAULT_SIMILARITY_THRESHOLD", "DEFAULT_MAX_SPEAKERS",
           "MAX_SPEAKERS"]

DEFAULT_SIMILARITY_THRESHOLD = 0.5
"""Cosine similarity from which a segment joins a known speaker (config value 0)."""
DEFAULT_MAX_SPEAKERS = 8
"""Speakers told apart in one stream when the config says 0."""
MAX_SPEAKERS = 32
"""Largest max_speakers a client may ask for (bounds state and cost per segment)."""


@dataclass(frozen=True)
class SpeakerOptions:
    similarity_threshold: float = DEFAULT_SIMILARITY_THRESHOLD
    """A segment at least this similar (cosine, in (0, 1)) to a speaker's centroid joins it."""
    max_speakers: int = DEFAULT_MAX_SPEAKERS
    """Once this many speakers exist, every segment joins the most similar one."""
    min_new_speaker_ms: int = 1000
    """Shorter segments never start a speaker: like no known one, they get label 0."""
    centroid_memory_ms: int = 30_000
    """A centroid's weight stops growing here: the newest ~30 s of a voice keep moving it."""

    def __post_init__(self) -> None:
        if not 0 < self.similarity_threshold < 1:
            raise ValueError(f"similarity_threshold must be in (0, 1), got {self.similarity_threshold}")
        if not 1 <= self.max_speakers <= MAX_SPEAKERS:
            raise ValueError(f"max_speakers must be 1..{MAX_SPEAKERS}, got {self.max_speakers}")
        if self.min_new_speaker_ms < 0 or self.centroid_memory_ms <= 0:
            raise ValueError("min_new_speaker_ms must be >= 0 and centroid_memory_ms > 0")

    @classmethod
    def from_config(cls, config: gateway_pb2.SpeakerLabelConfig) -> "SpeakerOptions":
        """The options a stream asked for; InvalidInput naming the bad field otherwise."""
        threshold = config.similarity_threshold
        if not math.isfinite(threshold) or not 0 <= threshold < 1:
            raise InvalidInput("config.speaker_labels.similarity_threshold must be in [0, 1) "
                               f"(0 means {DEFAULT_SIMILARITY_THRESHOLD}), got {threshold}")
        if config.max_speakers > MAX_SPEAKERS:
            raise InvalidInput(f"config.speaker_labels.max_speakers must be at most {MAX_SPEAKERS} "
                               f"(0 means {DEFAULT_MAX_SPEAKERS}), got {config.max_speakers}")
        return cls(similarity_threshold=threshold or DEFAULT_SIMILARITY_THRESHOLD,
                   max_speakers=config.max_speakers or DEFAULT_MAX_SPEAKERS)


class SpeakerClusterer:
    """Labels one stream's segments from their embeddings; see the module docstring."""

    def __init__(self, options: SpeakerOptions = SpeakerOptions()):
        self.options = options
        self._centroids: np.ndarray | None = None  # (speakers, dim), unit rows
        self._weights_ms: list[float] = []

    @property
    def speaker_count(self) -> int:
        return len(self._weights_ms)

    def assign(self, embedding: np.ndarray, duration_ms: int) -> int:
        """The label (from 1; 0: unknown) of the segment with this embedding and length."""
        vector = np.asarray(embedding, dtype=np.float64).ravel()
        norm = float(np.linalg.norm(vector))
        if not math.isfinite(norm) or norm == 0.0:
            raise ValueError("a speaker embedding must be finite and non-zero")
        vector /= norm
        weight = max(float(duration_ms), 1.0)
        short = duration_ms < self.options.min_new_speaker_ms
        if self._centroids is None:
            return 0 if short else self._new_speaker(vector, weight)
        if vector.size != self._centroids.shape[1]:
            raise ValueError(f"embedding of size {vector.size}, the stream's are {self._centroids.shape[1]}")
        similarities = self._centroids @ vector
        best = int(np.argmax(similarities))
        if similarities[best] < self.options.similarity_threshold:
            if short:
                return 0
            if self.speaker_count < self.options.max_speakers:
                return self._new_speaker(vector, weight)
        self._join(best, vector, weight)
        return best + 1

    def _new_speaker(self, vector: np.ndarray, weight: float) -> int:
        row = vector[None, :]
        self._centroids = row if self._centroids is None else np.vstack([self._centroids, row])
        self._weights_ms.append(min(weight, self.options.centroid_memory_ms))
        return self.speaker_count

    def _join(self, index: int, vector: np.ndarray, weight: float) -> None:
        assert self._centroids is not None
        held = self._weights_ms[index]
        moved = self._centroids[index] * held + vector * weight
        length = float(np.linalg.norm(moved))
        if length > 0:  # 0 only for a segment exactly opposite the centroid, of equal weight
            self._centroids[index] = moved / length
        self._weights_ms[index] = min(held + weight, self.options.centroid_memory_ms)
