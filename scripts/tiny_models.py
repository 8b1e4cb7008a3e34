"""The tiny generated model tree the test suite and the quick benchmarks run on, built once and cached.

``tiny_models_dir()`` returns a directory laid out like ``pretrained_models/``
(``model_cache/`` with the FunASR models, emotion2vec+ and CAM++, ``emotion-recognition-wav2vec2-IEMOCAP/``)
holding tiny random-weight models. It lives outside the checkout, in
``$SPEECH_TEST_MODELS_CACHE`` (default ``~/.cache/speech-analysis/test-models``),
as ``tiny-<key>/`` where the key hashes the builders' source
(scripts/make_test_models.py and scripts/fixtures/): a fresh clone reuses a warm
cache, and any change to a builder builds a new tree. Delete the directory to
force a rebuild.

Parallel pytest sessions (or xdist workers) serialise on a file lock; the tree
is built in a temporary sibling directory and renamed into place, so a reader
never sees a half-built tree and an interrupted build is simply redone.
"""

from __future__ import annotations

import fcntl
import hashlib
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
if str(PROJECT_ROOT) not in sys.path:  # imported by path (a benchmark script), not as scripts.tiny_models
    sys.path.insert(0, str(PROJECT_ROOT))

__all__ = ["CACHE_DIR", "BUILD_INFO_FILENAME", "builder_key", "exclusive_lock", "tiny_models_dir"]

log = logging.getLogger(__name__)

CACHE_DIR = Path(os.environ.get("SPEECH_TEST_MODELS_CACHE")
                 or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "speech-analysis"
                 / "test-models")
BUILD_INFO_FILENAME = "BUILD_INFO.json"

_resolved: Path | None = None


@contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created with its parents) for the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def builder_key() -> str:
    """A hash of every builder's source: the tree is rebuilt exactly when a builder changes."""
    digest = hashlib.sha256()
    scripts = PROJECT_ROOT / "scripts"
    for path in sorted([scripts / "make_test_models.py", *(scripts / "fixtures").glob("*.py")]):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _build(target: Path) -> None:
    from scripts.make_test_models import ALL_GROUPS, build_all

    tmp = target.with_name(f".{target.name}.building-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    started = time.perf_counter()
    timings = build_all(tmp, "tiny", groups=ALL_GROUPS)
    info = {"builder_key": builder_key(), "size": "tiny", "seconds": round(time.perf_counter() - started, 1),
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
    target = CACHE_DIR / f"tiny-{builder_key()}"
    with exclusive_lock(CACHE_DIR / "tiny.lock"):
        if not (target / BUILD_INFO_FILENAME).is_file():
            _build(target)
        # trees of other builder keys are left alone (11 MB each): a concurrent session
        # from another checkout may be reading one
        for leftover in CACHE_DIR.glob(".tiny-*.building-*"):  # builds killed midway
            shutil.rmtree(leftover, ignore_errors=True)
    _resolved = target
    return target
