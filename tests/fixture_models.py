"""The tiny generated model tree the test suite runs on, built once and cached.

``tiny_models_dir()`` returns a directory laid out like ``pretrained_models/``
(``model_cache/`` with the FunASR models and emotion2vec+, ``emotion-recognition-wav2vec2-IEMOCAP/``)
holding tiny random-weight models. It lives in
``<project>/.cache/test-models/tiny-<BUILDER_VERSION>/`` and is rebuilt only when
``BUILDER_VERSION`` (scripts/fixtures/common.py) changes; delete the directory
to force a rebuild.

Parallel pytest sessions (or xdist workers) serialise on a file lock; the tree
is built in a temporary sibling directory and renamed into place, so a reader
never sees a half-built tree and an interrupted build is simply redone. If the
emotion builder was not importable when the tree was built but is now, the
emotion model is added to the existing tree.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

PROJECT_ROOT = Path(__file__).resolve().parents[1]
if str(PROJECT_ROOT) not in sys.path:  # imported from a pytest rootdir that is not on sys.path
    sys.path.insert(0, str(PROJECT_ROOT))

from scripts.fixtures.common import BUILDER_VERSION  # noqa: E402

__all__ = ["CACHE_DIR", "BUILD_INFO_FILENAME", "tiny_models_dir"]

log = logging.getLogger(__name__)

CACHE_DIR = PROJECT_ROOT / ".cache" / "test-models"
BUILD_INFO_FILENAME = "BUILD_INFO.json"

_resolved: Path | None = None


@contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _emotion_builder_available() -> bool:
    try:
        import scripts.fixtures.speechbrain_emotion  # noqa: F401
    except ImportError:
        return False
    return True


def _build(target: Path) -> None:
    from scripts.make_test_models import build_all, build_emotion_if_available

    tmp = target.with_name(f".{target.name}.building-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    started = time.perf_counter()
    timings = build_all(tmp, "tiny", groups=("paraformer", "sensevoice"))
    emotion = build_emotion_if_available(tmp, "tiny") is not None
    info = {"builder_version": BUILDER_VERSION, "size": "tiny", "emotion": emotion,
            "seconds": round(time.perf_counter() - started, 1),
            "timings_s": {k: round(v, 1) for k, v in timings.items()}}
    (tmp / BUILD_INFO_FILENAME).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    log.info("built tiny test models in %s (%.1f s)", target, info["seconds"])


def tiny_models_dir() -> Path:
    """Build (once) and return the tiny model tree; safe to call from parallel sessions."""
    global _resolved
    if _resolved is not None:
        return _resolved
    target = CACHE_DIR / f"tiny-{BUILDER_VERSION}"
    with _exclusive_lock(CACHE_DIR / "tiny.lock"):
        info_path = target / BUILD_INFO_FILENAME
        if not info_path.is_file():
            _build(target)
        info = json.loads(info_path.read_text(encoding="utf-8"))
        if not info.get("emotion") and _emotion_builder_available():
            from scripts.make_test_models import build_emotion_if_available

            info["emotion"] = build_emotion_if_available(target, "tiny") is not None
            info_path.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        from scripts.fixtures.emotion2vec import EMOTION2VEC_BUILDER_VERSION

        if info.get("emotion2vec") != EMOTION2VEC_BUILDER_VERSION:
            # added to a tree built before it existed (a new directory: readers of the
            # rest of the tree are not disturbed)
            from scripts.fixtures.emotion2vec import build_emotion2vec_model, model_dir_in_cache

            build_emotion2vec_model(model_dir_in_cache(target / "model_cache"), "tiny")
            info["emotion2vec"] = EMOTION2VEC_BUILDER_VERSION
            info_path.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        # trees of older builder versions are left alone (11 MB each): a concurrent session
        # still on the old version may be reading one
        for leftover in CACHE_DIR.glob(".tiny-*.building-*"):  # builds killed midway
            shutil.rmtree(leftover, ignore_errors=True)
    _resolved = target
    return target
