"""Network access of the model downloads: the hubs, their probes and their clients.

Each model's hub is probed first (``probe_modelscope``, ``hf_revision``) with a
short timeout and a thread deadline, so without network every model fails
within seconds with a DownloadError saying so; the download itself then goes
through the hub's own client (``modelscope_snapshot``, ``hf_snapshot``), which
resumes partial files. ``download_file`` fetches one plain URL (the Silero
release archive). Endpoints are base URLs (``HubEndpoints``), overridable for
mirrors and tests. Used by :mod:`scripts.downloads.models`.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scripts.downloads import DownloadError

__all__ = [
    "DEFAULT_HF_ENDPOINT",
    "DEFAULT_MODELSCOPE_ENDPOINT",
    "HF_REVISION",
    "LIBRARY_ENV_DEFAULTS",
    "HubEndpoints",
    "probe_modelscope",
    "modelscope_snapshot",
    "hf_revision",
    "hf_snapshot",
    "download_file",
]

log = logging.getLogger("download_models")  # the tool's one logger (see scripts/downloads/__init__.py)

DEFAULT_HF_ENDPOINT = "https://huggingface.co"
DEFAULT_MODELSCOPE_ENDPOINT = "https://www.modelscope.cn"
MODELSCOPE_REVISION = "master"
HF_REVISION = "main"

#: Library knobs applied (unless already set) before the hub clients are imported:
#: they read them once, at import. Short connect timeouts and few retries keep a
#: dead network from stalling a run for minutes; the up-front probe of each hub
#: is what makes "no network" fail fast.
LIBRARY_ENV_DEFAULTS: dict[str, str] = {
    "HF_HUB_ETAG_TIMEOUT": "10",
    "HF_HUB_DOWNLOAD_TIMEOUT": "15",
    "MODELSCOPE_API_CONNECT_TIMEOUT": "5",
    "MODELSCOPE_API_MAX_RETRIES": "2",
    "MODELSCOPE_DOWNLOAD_MAX_RETRIES": "3",
    "MODELSCOPE_DOWNLOAD_RETRY_MAX_DELAY_SECONDS": "10",
    "MODELSCOPE_REPO_TREE_PAGE_MAX_ATTEMPTS": "2",
}


@dataclass(frozen=True)
class HubEndpoints:
    """Base URLs of the hubs (overridable for mirrors and tests)."""

    huggingface: str = DEFAULT_HF_ENDPOINT
    modelscope: str = DEFAULT_MODELSCOPE_ENDPOINT
    #: Silero release archive; ``None`` means the GitHub tag of the installed package's version.
    silero_archive_url: str | None = None


def _run_with_deadline(func: Callable[[], Any], timeout_s: float, what: str) -> Any:
    """Run ``func`` in a daemon thread and give up after ``timeout_s``.

    Socket timeouts do not cover name resolution, which can hang on a host
    whose DNS is unreachable; the thread bound covers it.
    """
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = func()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            result["error"] = exc

    thread = threading.Thread(target=target, name=f"probe {what}", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise TimeoutError(f"no answer within {timeout_s:g} s")
    if "error" in result:
        raise result["error"]
    return result.get("value")


def _probe_json(url: str, timeout_s: float, what: str) -> Any:
    """GET ``url`` as the reachability check before a model's download.

    Returns the parsed JSON, or ``None`` when the hub answered but not with
    usable JSON (an HTTP error other than "not found", a proxy page): the
    network works, so the hub client gets to try and report. Unreachable hosts,
    timeouts and "repository not found" raise a DownloadError saying so.
    """
    host = urllib.parse.urlsplit(url).netloc

    def fetch() -> bytes:
        request = urllib.request.Request(
            url, headers={"Accept": "application/json", "User-Agent": "download_models.py (python-urllib)"}
        )
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.read()

    try:
        body = _run_with_deadline(fetch, timeout_s + 1.0, what)
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 404):
            raise DownloadError(
                f"{what}: {host} answered HTTP {exc.code} for {url}: repository not found or not public"
            ) from exc
        log.warning("%s: %s answered HTTP %s to the probe %s; trying the download anyway", what, host, exc.code, url)
        return None
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(
            f"{what}: cannot reach {host} ({reason}). Check the network or proxy settings, or run this "
            "script on a machine with network access and copy the project directory over "
            "(see README, offline installation)."
        ) from exc
    try:
        return json.loads(body.decode("utf-8"))
    except ValueError:
        log.warning("%s: the probe %s did not return JSON; trying the download anyway", what, url)
        return None


# ---------------------------------------------------------------------------
# ModelScope
# ---------------------------------------------------------------------------


def probe_modelscope(endpoint: str, repo_id: str, timeout_s: float, what: str) -> None:
    """Raise a DownloadError unless ModelScope at ``endpoint`` is reachable and serves ``repo_id``."""
    endpoint = endpoint.rstrip("/")
    query = urllib.parse.urlencode({"Revision": MODELSCOPE_REVISION, "Recursive": "True"})
    listing = _probe_json(f"{endpoint}/api/v1/models/{repo_id}/repo/files?{query}", timeout_s, what)
    if isinstance(listing, dict) and listing.get("Success") is False:
        raise DownloadError(f"{what}: {endpoint} does not serve {repo_id}: {listing.get('Message', listing)}")


def modelscope_snapshot(endpoint: str, repo_id: str, local_dir: Path, what: str) -> None:
    """Download ``repo_id`` flat into ``local_dir`` (resuming what an earlier run left there)."""
    endpoint = endpoint.rstrip("/")
    log.info("%s: downloading %s from %s into %s", what, repo_id, endpoint, local_dir)
    try:
        # What modelscope.snapshot_download delegates to (modelscope >= 1.38),
        # without `import modelscope`, which imports torch (2 s, and a
        # download host needs no torch).
        from modelscope_hub.compat.snapshot_download import snapshot_download
    except ImportError:
        from modelscope.hub.snapshot_download import snapshot_download

    try:
        # local_dir gives the flat models/iic/<name> layout (this modelscope
        # would otherwise write models/iic--<name>/snapshots/<rev>/); cache_dir
        # only decides where its lock files go: inside local_dir too.
        snapshot_download(
            repo_id,
            revision=MODELSCOPE_REVISION,
            local_dir=str(local_dir),
            cache_dir=str(local_dir),
            endpoint=endpoint,
        )
    except Exception as exc:  # noqa: BLE001 - any client failure becomes one actionable message
        raise DownloadError(
            f"{what}: download of {repo_id} from {endpoint} failed: {exc}. "
            f"Partial files stay in {local_dir}; run the command again to resume."
        ) from exc


# ---------------------------------------------------------------------------
# Hugging Face
# ---------------------------------------------------------------------------


def hf_revision(endpoint: str, repo_id: str, timeout_s: float, what: str) -> tuple[str, set[str] | None]:
    """Commit of ``main`` and the file names of ``repo_id`` (``HF_REVISION``, ``None`` if the probe could not tell)."""
    endpoint = endpoint.rstrip("/")
    info = _probe_json(f"{endpoint}/api/models/{repo_id}/revision/{HF_REVISION}", timeout_s, what)
    if not isinstance(info, dict) or not isinstance(info.get("sha"), str):
        return HF_REVISION, None
    files = {sibling.get("rfilename") for sibling in info.get("siblings") or [] if isinstance(sibling, dict)}
    return info["sha"], files


def hf_snapshot(endpoint: str, repo_id: str, revision: str, timeout_s: float, what: str, **kwargs: Any) -> Path:
    """``huggingface_hub.snapshot_download`` of ``repo_id@revision``; ``kwargs`` go to it (where, which files)."""
    from huggingface_hub import snapshot_download

    endpoint = endpoint.rstrip("/")
    try:
        return Path(
            snapshot_download(
                repo_id,
                revision=revision,
                endpoint=endpoint,
                etag_timeout=timeout_s,
                **kwargs,
            )
        )
    except Exception as exc:  # noqa: BLE001 - any client failure becomes one actionable message
        where = kwargs.get("local_dir") or kwargs.get("cache_dir")
        raise DownloadError(
            f"{what}: download of {repo_id}@{revision[:12]} from {endpoint} failed: {exc}. "
            f"Partial files stay in {where}; run the command again to resume."
        ) from exc


# ---------------------------------------------------------------------------
# plain files (the Silero release archive on GitHub)
# ---------------------------------------------------------------------------


def download_file(url: str, destination: Path, timeout_s: float, what: str) -> None:
    """GET ``url`` into ``destination`` with a progress bar; a DownloadError if it fails or comes short."""
    from tqdm import tqdm

    def open_url() -> Any:
        return urllib.request.urlopen(url, timeout=timeout_s)

    try:
        response = _run_with_deadline(open_url, timeout_s + 1.0, what)
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"{what}: {url} answered HTTP {exc.code}") from exc
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(
            f"{what}: cannot reach {urllib.parse.urlsplit(url).netloc} ({reason}); "
            "without network use the default --silero-source package"
        ) from exc
    total = int(response.headers.get("Content-Length") or 0) or None
    try:
        with response, open(destination, "wb") as sink, tqdm(
            total=total, unit="B", unit_scale=True, desc=destination.name
        ) as progress:
            while chunk := response.read(1 << 16):
                sink.write(chunk)
                progress.update(len(chunk))
    except OSError as exc:
        raise DownloadError(f"{what}: download of {url} broke off: {exc}") from exc
    if total is not None and destination.stat().st_size != total:
        raise DownloadError(f"{what}: {url} sent {destination.stat().st_size} of {total} bytes")
