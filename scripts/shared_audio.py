"""The recorded test clips in ``../shared/audio`` (beside the checkout) and their manifest.

``manifest.json`` maps each clip's name to its file and its speech segments (start/end
in seconds). Used by the tests (through tests/conftest.py) and the benchmarks.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf

__all__ = ["SHARED_AUDIO", "load_manifest", "read_clip"]

SHARED_AUDIO = Path(__file__).resolve().parents[2] / "shared" / "audio"


def load_manifest() -> dict:
    """The manifest: clip name -> ``{"file": ..., "segments": [{"start": s, "end": s}, ...], ...}``."""
    return json.loads((SHARED_AUDIO / "manifest.json").read_text())


def read_clip(name: str, dtype: str = "float32") -> tuple[np.ndarray, int]:
    """The samples of clip ``name`` and its sample rate in Hz."""
    entry = load_manifest()[name]
    return sf.read(SHARED_AUDIO / entry["file"], dtype=dtype)
