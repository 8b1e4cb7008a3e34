"""Recognise model directories that hold generated random-weight fixtures.

Real model weights cannot be downloaded in every environment, so the project
can generate models with the real on-disk layout and random weights (see
``scripts/make_test_models.py``). Each generated model directory carries a
``RANDOM_WEIGHTS.json`` marker. Production code reads it only to *say so*
(a warning at load, a flag in health/metrics), never to change behaviour.

Usage::

    marker = read_random_weights_marker(model_dir)
    if marker is not None:
        logger.warning("%s holds random weights (size=%s)", model_dir, marker.get("size"))

This module is deliberately light (stdlib only, no torch) so any process can
import it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

__all__ = ["MARKER_FILENAME", "read_random_weights_marker", "is_random_weights", "warn_if_random_weights"]

logger = logging.getLogger(__name__)

MARKER_FILENAME = "RANDOM_WEIGHTS.json"


def read_random_weights_marker(model_dir: Path | str) -> dict[str, Any] | None:
    """Return the marker of a generated model directory, or None for a real one.

    The marker is a JSON object such as ``{"random_weights": true, "size":
    "tiny", "builder_version": 1, "note": "..."}``. A marker that exists but
    cannot be parsed still means "not a real model": it is returned as
    ``{"random_weights": True, "unreadable": True}`` rather than ignored.
    """
    path = Path(model_dir) / MARKER_FILENAME
    if not path.is_file():
        return None
    try:
        with path.open("r", encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        logger.warning("cannot parse random-weights marker %s: %s", path, exc)
        return {"random_weights": True, "unreadable": True}
    if not isinstance(data, dict):
        logger.warning("random-weights marker %s is not a JSON object", path)
        return {"random_weights": True, "unreadable": True}
    return data


def is_random_weights(model_dir: Path | str) -> bool:
    """True when ``model_dir`` carries a random-weights marker."""
    marker = read_random_weights_marker(model_dir)
    return marker is not None and bool(marker.get("random_weights", True))


def warn_if_random_weights(model_dir: Path | str, part: str) -> bool:
    """Log a warning when ``model_dir`` holds random weights; return whether it does.

    For a worker's start: its answers then carry ``model_info.random_weights``.
    """
    marker = read_random_weights_marker(model_dir)
    random_weights = marker is not None and bool(marker.get("random_weights", True))
    if random_weights:
        logger.warning("%s model %s holds RANDOM WEIGHTS (size=%s): its results are meaningless; "
                       "every response carries model_info.random_weights=true",
                       part, model_dir, marker.get("size", "?"))
    return random_weights
