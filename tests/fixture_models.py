"""The cached tiny model tree (:mod:`scripts.tiny_models`), under the name the tests import,
and the ONNX exports of its models (:func:`onnx_export`), cached beside it."""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:  # imported from a pytest rootdir that is not on sys.path
    sys.path.insert(0, str(_ROOT))

from scripts.tiny_models import (BUILD_INFO_FILENAME, CACHE_DIR, builder_key, exclusive_lock,  # noqa: E402
                                 tiny_models_dir)

__all__ = ["CACHE_DIR", "BUILD_INFO_FILENAME", "builder_key", "tiny_models_dir", "onnx_export", "export_key"]

_UNUSED_EXPORT_S = 24 * 3600
#: What an export's result depends on besides the model and the code: their versions.
_EXPORT_LIBRARIES = ("torch", "torchaudio", "numpy", "onnx", "onnxruntime", "funasr", "speechbrain", "transformers",
                     "kaldi-native-fbank")


def export_key(script: Path, model_dir: Path, root: Path = _ROOT) -> str:
    """A hash of everything an export depends on: the model directory (its path and each
    file's name, size and modification time), the script, every source under
    ``root``/services/, Python's and the libraries' versions."""
    model_dir = model_dir.resolve()
    digest = hashlib.sha256(f"{model_dir}\0{sys.version_info[:2]}\0".encode())
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        stat = path.stat()
        digest.update(f"{path.relative_to(model_dir)}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
    for path in [script, *sorted((root / "services").rglob("*.py"))]:
        digest.update(f"{path.relative_to(root)}\0".encode() + path.read_bytes())
    for name in _EXPORT_LIBRARIES:
        digest.update(f"{name}={importlib.metadata.version(name)}\0".encode())
    return digest.hexdigest()[:16]


def onnx_export(script: str, model_dir: Path) -> Path:
    """The directory ``scripts/<script> --model-dir MODEL_DIR --out DIR`` writes, made once
    per version of everything it depends on (:func:`export_key`) and cached in
    ``CACHE_DIR/exports/``: an export costs 5-10 s of CPU, and a warm cache (CI's too)
    reuses it until the script, the services' code, a library or the model changes.
    Parallel sessions and xdist workers serialise on a file lock; the export is written to a
    temporary sibling and renamed into place, so a reader never sees half of one. Exports of
    the same script unused for a day are deleted (each code change makes a new one)."""
    script_path = _ROOT / "scripts" / script
    out = CACHE_DIR / "exports" / f"{script_path.stem}-{export_key(script_path, model_dir)}"
    out.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(CACHE_DIR / "exports.lock"):
        for leftover in out.parent.glob(f".{script_path.stem}-*.building-*"):  # exports killed midway
            shutil.rmtree(leftover, ignore_errors=True)
        if not out.is_dir():
            tmp = out.with_name(f".{out.name}.building-{os.getpid()}")
            try:
                done = subprocess.run([sys.executable, str(script_path), "--model-dir", str(model_dir),
                                       "--out", str(tmp)], cwd=_ROOT, capture_output=True, text=True, timeout=240)
                assert done.returncode == 0, done.stdout + done.stderr
                tmp.rename(out)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        os.utime(out)  # in use: kept by the clean-up below
        for old in out.parent.glob(f"{script_path.stem}-*"):
            if old != out and time.time() - old.stat().st_mtime > _UNUSED_EXPORT_S:
                shutil.rmtree(old, ignore_errors=True)
    return out
