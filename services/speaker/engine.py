"""Speaker embeddings of finished segments (FunASR's CAM++, ``iic/speech_campplus_sv_zh-cn_16k-common``).

CAM++ turns a segment's 80-bin Kaldi fbank (25 ms windows every 10 ms, minus
the segment's mean) into one 192-dim speaker embedding: a densely connected
TDNN with context-aware masking, then statistics pooling (mean and standard
deviation over all frames) and a dense layer. The model is loaded with FunASR's
own loader, ``AutoModel``, from a local ModelScope-layout directory only (see
:func:`load_campplus_model`), through the same selective FunASR import and
memory-mapped checkpoint loading as the ASR worker's Paraformer. The features
are FunASR's (``funasr.models.campplus.utils.extract_feature``, what
``CAMPPlus.inference`` computes), the forward pass is the module's own.
``SPEAKER_RUNTIME=onnx`` replaces :class:`CamPlusModel` by the same network
exported to ONNX, with the same features computed without torch
(services/speaker/onnx_runtime.py); this engine serves either unchanged.

Embeddings are L2-normalised, so the dot product of two is their cosine
similarity (what clustering into speaker labels compares).

Batching never pads. Padding would enter the mean normalisation of the
features, the convolutions at the segment's end and above all the statistics
pooling (zeros pull the mean down and the deviation up): a segment's embedding
would depend on what it was batched with. So one model call only ever holds
segments of identical length (short equal-length segments share a call; any
other segment is a call of its own, one after the other on the model thread),
and a result never depends on its batch.

A segment longer than ``max_audio_s`` is embedded from its middle
``max_audio_s`` seconds: a VAD segment's edges are where speech starts and
trails off, the middle is the voice itself, and the cost per segment stays
bounded (CAM++ compute and activation memory grow linearly with the length).

Usage::

    model = load_campplus_model(Path(".../models/iic/speech_campplus_sv_zh-cn_16k-common"))
    engine = SpeakerEngine(model, SpeakerOptions())
    engine.warm_up()
    result = engine.embed(samples)              # float32 mono 16 kHz -> SpeakerEmbedding (192 floats)
    results = engine.embed_batch([a, b])       # one entry per segment, an exception for a bad one
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from services.common.audio import SAMPLE_RATE_HZ, check_segment, crop_middle, ms_to_samples, samples_to_ms
from services.common.batching import chunked
from services.common.errors import InvalidInput
from services.common.memory import memory_mb, trim_heap
from services.common.model_paths import MODEL_SPECS, SPEAKER_MODEL, download_command, missing_files

__all__ = [
    "MIN_MODEL_SAMPLES",
    "SpeakerOptions",
    "SpeakerEmbedding",
    "EmbeddingModel",
    "CamPlusModel",
    "SpeakerEngine",
    "load_campplus_model",
]

log = logging.getLogger(__name__)

MIN_MODEL_SAMPLES = 720
"""The least audio CAM++ embeds at all (45 ms): three fbank frames. With fewer, the
frame-rate-halving layer leaves a single frame and the pooled standard deviation is NaN."""


@dataclass(frozen=True)
class SpeakerOptions:
    """What the engine accepts and how much of a segment it embeds."""

    min_segment_ms: int = 200
    """Shorter segments are rejected (InvalidInput): a fifth of a second holds a syllable
    or two, too little to say anything about a voice. At least 45 ms (:data:`MIN_MODEL_SAMPLES`)."""
    max_audio_s: float = 10.0
    """A longer segment is embedded from its middle ``max_audio_s`` seconds (bounds the
    compute and activation memory per segment; the embedding averages over the frames anyway)."""

    def __post_init__(self) -> None:
        if self.min_segment_samples < MIN_MODEL_SAMPLES:
            raise ValueError(f"min_segment_ms must be at least {samples_to_ms(MIN_MODEL_SAMPLES)} "
                             f"(CAM++ needs three 10 ms fbank frames), got {self.min_segment_ms}")
        if self.max_audio_samples < self.min_segment_samples:
            raise ValueError(f"max_audio_s must be at least min_segment_ms, got {self.max_audio_s} s "
                             f"with min_segment_ms {self.min_segment_ms}")

    @property
    def min_segment_samples(self) -> int:
        return ms_to_samples(self.min_segment_ms)

    @property
    def max_audio_samples(self) -> int:
        return int(round(self.max_audio_s * SAMPLE_RATE_HZ))


@dataclass(frozen=True)
class SpeakerEmbedding:
    """One segment's embedding."""

    embedding: np.ndarray
    """float32, shape (embedding size,), unit L2 norm."""
    audio_ms: int
    """Audio the embedding was computed from: the whole segment, or its middle ``max_audio_s``."""
    compute_ms: float
    """Wall time of the model call this segment took part in (a shared call counts in full)."""


class EmbeddingModel(Protocol):
    """A model that turns equal-length segments into speaker embeddings."""

    embedding_size: int

    def embed(self, segments: np.ndarray) -> np.ndarray:
        """(batch, samples) float32 -> (batch, embedding_size) float32, not normalised."""
        ...


class SpeakerEngine:
    """Embeds segments with a shared, read-only model; safe to call from one thread at a time."""

    def __init__(self, model: EmbeddingModel, options: SpeakerOptions, max_call_audio_s: float = 10.0):
        self.model = model
        self.options = options
        self.embedding_size = int(model.embedding_size)
        # Equal-length segments share a call up to this much audio (bounds activation memory).
        self._max_call_samples = max(int(max_call_audio_s * SAMPLE_RATE_HZ), options.max_audio_samples)

    def embed(self, samples: np.ndarray) -> SpeakerEmbedding:
        result = self.embed_batch([samples])[0]
        if isinstance(result, Exception):
            raise result
        return result

    def embed_batch(self, segments: Sequence[np.ndarray]) -> list[SpeakerEmbedding | Exception]:
        """One result per segment, in order; an invalid segment gets its exception instead."""
        results: list[SpeakerEmbedding | Exception | None] = [None] * len(segments)
        cropped: dict[int, np.ndarray] = {}
        by_length: dict[int, list[int]] = defaultdict(list)
        for index, samples in enumerate(segments):
            try:
                check_segment(samples, self.options.min_segment_samples)
            except InvalidInput as exc:
                results[index] = exc
                continue
            cropped[index] = crop_middle(samples, self.options.max_audio_samples)
            by_length[cropped[index].size].append(index)

        for length, indices in by_length.items():
            # Equal lengths only: no padding, so an embedding never depends on its batch.
            for chunk in chunked(indices, max(1, self._max_call_samples // length)):
                batch = np.stack([cropped[index] for index in chunk])
                started = time.perf_counter()
                embeddings = self.model.embed(batch)
                compute_ms = (time.perf_counter() - started) * 1000.0
                for index, row in zip(chunk, embeddings):
                    results[index] = SpeakerEmbedding(_unit(row), samples_to_ms(length), compute_ms)
        # The calls' activations were freed into glibc's arenas, which would keep them.
        trim_heap()
        return results  # type: ignore[return-value]

    def warm_up(self) -> None:
        """One short call so the first request does not pay for lazy initialisation
        (and every weight page of the memory-mapped checkpoint is read once)."""
        noise = (np.random.default_rng(0).standard_normal(SAMPLE_RATE_HZ) * 0.01).astype(np.float32)
        started = time.perf_counter()
        self.embed(noise)
        log.info("speaker model warmed up in %.0f ms", (time.perf_counter() - started) * 1000)


def _unit(vector: np.ndarray) -> np.ndarray:
    values = np.asarray(vector, dtype=np.float64)
    norm = float(np.linalg.norm(values))
    if not np.isfinite(norm) or norm == 0.0:
        raise RuntimeError(f"speaker model returned an unusable embedding (norm {norm})")
    return (values / norm).astype(np.float32)


# --------------------------------------------------------------------------- CAM++


class CamPlusModel:
    """The loaded FunASR ``CAMPPlus`` module (read-only after loading)."""

    def __init__(self, module, model_dir: Path):
        from funasr.models.campplus.utils import extract_feature

        self.module = module.eval()
        self.model_dir = model_dir
        self._extract_feature = extract_feature
        dense = getattr(getattr(module, "xvector", None), "dense", None)
        if dense is None or getattr(module, "output_level", "segment") != "segment":
            raise ValueError(f"{model_dir}: not a segment-level CAM++ model (no xvector.dense layer)")
        self.embedding_size = int(dense.linear.out_channels)

    def embed(self, segments: np.ndarray) -> np.ndarray:
        import torch

        if segments.ndim != 2 or segments.dtype != np.float32:
            raise TypeError("segments must be a (batch, samples) float32 array of equal-length segments")
        with torch.inference_mode():
            waves = [torch.from_numpy(row) for row in np.ascontiguousarray(segments)]
            # What CAMPPlus.inference computes: 80-bin Kaldi fbank minus its mean, per segment
            # (equal lengths: pad_list inside adds nothing).
            features, _lengths, _samples = self._extract_feature(waves)
            return self.module(features.to(torch.float32)).numpy()


def load_campplus_model(model_dir: Path, lean: bool = True) -> CamPlusModel:
    """Load CAM++ from ``model_dir`` with FunASR's ``AutoModel``, offline.

    ``model_dir`` is a local directory (never a hub id: ModelScope makes no
    request for a local path); FunASR reads ``configuration.json``'s
    ``file_path_metas`` (``config.yaml``, ``campplus_cn_common.bin``) as for any
    ModelScope release. The FunASR import is selective
    (``services.funasr``), and with ``lean`` the checkpoint is
    memory-mapped instead of copied (``services.funasr.lean_loading``).
    Raises ``FileNotFoundError`` naming the missing files and the download command.
    """
    import torch

    from services.funasr.automodel import load_automodel

    model_dir = Path(model_dir).absolute()
    missing = missing_files(model_dir, MODEL_SPECS[SPEAKER_MODEL])
    if missing:
        raise FileNotFoundError(
            f"CAM++ model directory {model_dir} is incomplete; missing: {', '.join(missing)}. "
            f"Fetch it with `{download_command([SPEAKER_MODEL])}` (on a host with network access) "
            "and copy it here.")
    started = time.monotonic()
    # threads: AutoModel would otherwise set torch's thread count to 4 for the whole process.
    auto = load_automodel(model_dir, torch.get_num_threads(), lean)
    model = CamPlusModel(auto.model, model_dir)
    rss, peak = memory_mb()
    log.info("speaker model loaded from %s in %.1f s (%d-dim embeddings; rss %.0f MB, peak %.0f MB)",
             model_dir, time.monotonic() - started, model.embedding_size, rss, peak)
    return model
