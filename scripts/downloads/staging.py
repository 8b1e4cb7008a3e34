"""Where a download lands before it goes live, and how it goes live.

Every model is fetched into a hidden ``.<name>.partial`` directory next to its
target (``partial_dir``), checked (``require_complete``), cleaned of the hub
clients' bookkeeping (``remove_download_metadata``) and renamed into place
(``install``), so an interrupted run never leaves a directory the workers would
accept and the next run resumes from the partial directory. Used by
:mod:`scripts.downloads.models`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from scripts.downloads import DownloadError
from services.common.model_paths import MODEL_SPECS, missing_files

__all__ = [
    "partial_dir",
    "install",
    "remove_stale_asides",
    "remove_download_metadata",
    "require_complete",
    "materialise_symlinks",
    "write_text_atomic",
]


def partial_dir(target: Path) -> Path:
    """Staging directory next to ``target``: same file system, so the final rename is atomic."""
    return target.parent / f".{target.name}.partial"


def install(staging: Path, target: Path) -> None:
    """Move a complete ``staging`` directory to ``target``, replacing an incomplete one."""
    target.parent.mkdir(parents=True, exist_ok=True)
    aside = target.parent / f".{target.name}.old-{os.getpid()}"
    if target.exists() or target.is_symlink():
        os.rename(target, aside)
    os.rename(staging, target)
    if aside.exists():
        shutil.rmtree(aside, ignore_errors=True)


def remove_stale_asides(target: Path) -> None:
    """Drop the ``.<name>.old-<pid>`` directories an interrupted ``install`` left beside ``target``."""
    for stale in target.parent.glob(f".{target.name}.old-*"):
        shutil.rmtree(stale, ignore_errors=True)


def remove_download_metadata(directory: Path) -> None:
    """Drop hub-client bookkeeping (resume metadata, locks) before a directory goes live."""
    for relative in (".cache/huggingface", ".lock", "._____temp"):
        shutil.rmtree(directory / relative, ignore_errors=True)
    cache_dir = directory / ".cache"
    if cache_dir.is_dir() and not any(cache_dir.iterdir()):
        cache_dir.rmdir()


def require_complete(name: str, directory: Path, what: str) -> None:
    """Raise a DownloadError unless ``directory`` holds every file model ``name`` requires."""
    missing = missing_files(directory, MODEL_SPECS[name])
    if missing:
        raise DownloadError(
            f"{name}: {what} finished but {directory} lacks {', '.join(missing)}; "
            "the repository layout may have changed. Partial files are kept for the next run."
        )


def materialise_symlinks(snapshot: Path, what: str) -> None:
    """Replace a Hugging Face cache snapshot's symlinks into ``blobs/`` by the files themselves.

    A copied project directory then works whatever the copy tool does with
    symlinks. Several links may share one blob (identical files).
    """
    moved: dict[Path, Path] = {}
    for link in sorted(p for p in snapshot.rglob("*") if p.is_symlink()):
        blob = link.resolve()
        if blob in moved:
            temporary = link.with_name(link.name + ".copy")
            shutil.copy2(moved[blob], temporary)
            os.replace(temporary, link)
        elif blob.is_file():
            os.replace(blob, link)
            moved[blob] = link
        else:
            raise DownloadError(f"{what}: {link} points to missing {blob}; run again to re-download it")


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``path`` through a temporary file, so a reader sees the old text or the new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
