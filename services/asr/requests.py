"""What the ASR engine takes and returns: modes, options, requests, transcripts.

No model code here (the engine is ``services/asr/engine.py``); the servicer and
benchmarks build these types without loading anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Hashable

import numpy as np

from services.asr.sensevoice_tags import REQUEST_LANGUAGES, Labelled
from services.common.errors import InvalidInput

__all__ = [
    "PARAFORMER",
    "SENSEVOICE",
    "MODES",
    "BATCH_FIELDS",
    "modes_for",
    "AsrOptions",
    "ModelDirs",
    "AsrRequest",
    "TokenTime",
    "Transcript",
    "normalise_language",
]

PARAFORMER = "paraformer"
SENSEVOICE = "sensevoice"
MODES: tuple[str, ...] = (PARAFORMER, SENSEVOICE)
BATCH_FIELDS: dict[str, tuple[str, ...]] = {PARAFORMER: ("hotwords",), SENSEVOICE: ("language", "use_itn")}
"""The request fields each mode decodes with: requests of one batch share them."""

def modes_for(setting: str) -> tuple[str, ...]:
    """Served modes for an ``ASR_MODE`` value; the first is the default mode."""
    value = setting.strip().lower()
    if value == "both":
        return (PARAFORMER, SENSEVOICE)
    if value in MODES:
        return (value,)
    raise ValueError(f"ASR_MODE must be paraformer, sensevoice or both, got {setting!r}")


@dataclass(frozen=True)
class AsrOptions:
    """How models are loaded and segments decoded."""

    threads: int = 2
    """torch intra-op threads (FunASR ``ncpu``)."""
    max_segment_s: float = 30.0
    """Longer segments are cut into pieces of at most this length (FSMN-VAD where loaded)."""
    quantize_int8: bool = False
    """Dynamic int8 quantization of every ``nn.Linear`` of the ASR models."""
    sensevoice_timestamps: bool = False
    """SenseVoice token timestamps. FunASR aligns them by re-running the CTC layer over
    the whole batch once per segment: ~10% more compute alone, and batching stops paying."""
    lean_loading: bool = True
    """Memory-map checkpoints and return freed heap between loads (see lean_loading)."""
    min_segment_ms: int = 100
    """Shorter segments (or pieces) cannot hold a word: answered with empty text, no model call."""
    silence_peak_dbfs: float = -60.0
    """Segments whose peak is below this are silence: empty text, no model call."""

    def __post_init__(self) -> None:
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if self.max_segment_s < 1.0:
            raise ValueError(f"max_segment_s must be >= 1, got {self.max_segment_s}")


@dataclass(frozen=True)
class ModelDirs:
    """Local model directories (None for models this deployment does not use)."""

    paraformer: Path | None = None
    fsmn_vad: Path | None = None
    ct_punc: Path | None = None
    sensevoice: Path | None = None


def normalise_language(language: str) -> str:
    value = (language or "auto").strip().lower()
    if value not in REQUEST_LANGUAGES:
        raise InvalidInput(f"language must be one of {', '.join(REQUEST_LANGUAGES)}, got {language!r}")
    return value


@dataclass(frozen=True)
class AsrRequest:
    """One segment to transcribe (float32 mono 16 kHz)."""

    samples: np.ndarray = field(repr=False)
    mode: str
    hotwords: tuple[str, ...] = ()
    """Paraformer only; see :func:`normalise_hotwords`."""
    language: str = "auto"
    """SenseVoice only: auto, zh, en, yue, ja, ko."""
    use_itn: bool = False
    """SenseVoice only: inverse text normalisation."""

    def batch_key(self) -> Hashable:
        """Requests with equal keys can share one model call: same mode, same mode options."""
        return (self.mode, *(getattr(self, name) for name in BATCH_FIELDS[self.mode]))


@dataclass(frozen=True)
class TokenTime:
    """A recognised token (character or word) and its time in the segment."""

    token: str
    start_ms: int
    end_ms: int


@dataclass(frozen=True)
class Transcript:
    text: str
    """Final text: punctuated (Paraformer) or ITN'd as asked (SenseVoice); never tags."""
    tokens: tuple[TokenTime, ...]
    """Token times relative to the segment start, non-decreasing, within the segment."""
    mode: str
    language: Labelled | None = None
    emotion: Labelled | None = None
    event: Labelled | None = None
    itn: bool | None = None
    """SenseVoice: whether the model reported ITN applied (its ``<|withitn|>`` tag)."""
    raw_text: str = ""
    """Paraformer: the text before punctuation."""
    pieces: int = 0
    """Pieces the segment was decoded in (0: skipped as silent/too short)."""
    compute_ms: float = 0.0
    """Wall time of the model call that served this request (shared by a batch)."""
