"""The cached tiny model tree (:mod:`scripts.tiny_models`), under the name the tests import."""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:  # imported from a pytest rootdir that is not on sys.path
    sys.path.insert(0, str(_ROOT))

from scripts.tiny_models import BUILD_INFO_FILENAME, CACHE_DIR, builder_key, tiny_models_dir  # noqa: E402

__all__ = ["CACHE_DIR", "BUILD_INFO_FILENAME", "builder_key", "tiny_models_dir"]
