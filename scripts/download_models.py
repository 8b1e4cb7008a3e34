#!/usr/bin/env python
"""Download the models the workers need, into the layout the workers resolve.

Run from the project root on a machine with network access::

    python scripts/download_models.py                  # everything
    python scripts/download_models.py --paraformer     # Paraformer + FSMN-VAD + CT-punc
    python scripts/download_models.py --emotion2vec    # emotion2vec+ base (EMOTION_MODEL=emotion2vec)
    python scripts/download_models.py --speaker        # CAM++, the speaker worker's model (speaker labels)
    python scripts/download_models.py --sensevoice --cache-dir /data/emotion_models
    python scripts/download_models.py --check --mode sensevoice   # report only

Where things go (the same rules as ``services/common/model_paths.py``):

* ``--paraformer``: the three ModelScope models, into
  ``<cache>/models/iic/<name>/``.
* ``--sensevoice``: ``FunAudioLLM/SenseVoiceSmall`` from Hugging Face, into the
  hub cache layout ``<cache>/huggingface/hub/models--FunAudioLLM--SenseVoiceSmall/``
  (``refs/main`` + ``snapshots/<rev>/``; the snapshot holds real files, not
  symlinks into ``blobs/``, so any copy tool keeps it intact).
* ``--speechbrain``: ``speechbrain/emotion-recognition-wav2vec2-IEMOCAP`` plus
  ``facebook/wav2vec2-base`` (config, feature-extractor config, weights) into
  ``pretrained_models/emotion-recognition-wav2vec2-IEMOCAP/[wav2vec2-base/]``.
* ``--emotion2vec``: ModelScope's ``iic/emotion2vec_plus_base`` (emotion2vec+, the
  emotion worker's model with ``EMOTION_MODEL=emotion2vec``), into
  ``<cache>/models/iic/emotion2vec_plus_base/``.
* ``--speaker``: ModelScope's ``iic/speech_campplus_sv_zh-cn_16k-common`` (CAM++,
  the speaker worker's model, 28 MB), into
  ``<cache>/models/iic/speech_campplus_sv_zh-cn_16k-common/``.
* ``--silero``: a torch.hub-loadable ``silero-vad/`` repository, by default
  materialised from the installed ``silero-vad`` package (same version as the
  service uses, no network); ``--silero-source github`` fetches the GitHub
  release archive instead.

``<cache>`` is ``--cache-dir``, else MODEL_CACHE_DIR, else the first existing of
``pretrained_models/model_cache``, ``/data/emotion_models``,
``/data/emotion-models`` (created as ``pretrained_models/model_cache`` when none
exists).

Every model is downloaded into a hidden ``.<name>.partial`` directory next to
its target and renamed into place only once all required files are there, so
an interrupted run never leaves a directory the workers would accept; running
again resumes from the partial directory. Each model's hub is probed first with
a short timeout, so without network every model fails within seconds with a
message saying so, and the exit status is non-zero.

Endpoints follow the libraries' own variables: ``HF_ENDPOINT`` for Hugging Face
and ``MODELSCOPE_ENDPOINT`` (or the deprecated ``MODELSCOPE_DOMAIN``) for
ModelScope, e.g. to use a mirror.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import sys
import tarfile
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Run as `python scripts/download_models.py`, only scripts/ is on sys.path.
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

from services.common import model_paths  # noqa: E402
from services.common.model_paths import (  # noqa: E402
    MODEL_SPECS,
    ModelCacheDir,
    ResolvedModel,
    missing_files,
    resolve_layout,
    resolve_model_cache_dir,
)

__all__ = [
    "HubEndpoints",
    "DownloadOptions",
    "DownloadError",
    "FETCHERS",
    "fetch_paraformer",
    "fetch_sensevoice",
    "fetch_speechbrain",
    "fetch_emotion2vec",
    "fetch_speaker",
    "fetch_silero",
    "main",
]

log = logging.getLogger("download_models")

DEFAULT_HF_ENDPOINT = "https://huggingface.co"
DEFAULT_MODELSCOPE_ENDPOINT = "https://www.modelscope.cn"
MODELSCOPE_REVISION = "master"
HF_REVISION = "main"
WAV2VEC2_BASE_REPO_ID = "facebook/wav2vec2-base"
SILERO_ARCHIVE_URL_TEMPLATE = "https://github.com/snakers4/silero-vad/archive/refs/tags/v{version}.tar.gz"

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

# Written into silero-vad/ when it is materialised from the installed package;
# mirrors upstream's hubconf.py (snakers4/silero-vad) for the silero_vad entry.
SILERO_HUBCONF = '''\
"""torch.hub entry point of this local Silero VAD copy (written by scripts/download_models.py).

    model, utils = torch.hub.load(repo_or_dir="silero-vad", model="silero_vad", source="local")
"""

dependencies = ["torch"]

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if os.path.join(_HERE, "src") not in sys.path:
    sys.path.insert(0, os.path.join(_HERE, "src"))

from silero_vad.utils_vad import (  # noqa: E402
    OnnxWrapper,
    VADIterator,
    collect_chunks,
    get_speech_timestamps,
    init_jit_model,
    read_audio,
    save_audio,
)


def silero_vad(onnx=False, force_onnx_cpu=False, opset_version=16):
    """Silero VAD model and its utils, loaded from this directory's files."""
    model_dir = os.path.join(_HERE, "src", "silero_vad", "data")
    if onnx:
        if opset_version not in (15, 16):
            raise ValueError("Available ONNX opset_version: 15, 16")
        name = "silero_vad.onnx" if opset_version == 16 else f"silero_vad_16k_op{opset_version}.onnx"
        model = OnnxWrapper(os.path.join(model_dir, name), force_onnx_cpu)
    else:
        model = init_jit_model(os.path.join(model_dir, "silero_vad.jit"))
    utils = (get_speech_timestamps, save_audio, read_audio, VADIterator, collect_chunks)
    return model, utils
'''


class DownloadError(Exception):
    """A model could not be fetched; the message says why and what to do."""


@dataclass(frozen=True)
class HubEndpoints:
    """Base URLs of the hubs (overridable for mirrors and tests)."""

    huggingface: str = DEFAULT_HF_ENDPOINT
    modelscope: str = DEFAULT_MODELSCOPE_ENDPOINT
    #: Silero release archive; ``None`` means the GitHub tag of the installed package's version.
    silero_archive_url: str | None = None


@dataclass(frozen=True)
class DownloadOptions:
    """What to download where.

    ``probe_timeout_s`` bounds the first request to each hub (the one that
    tells "no network" apart); ``force`` re-downloads models that are already
    complete; ``silero_source`` is ``"package"`` or ``"github"``.
    """

    project_root: Path
    cache: ModelCacheDir
    endpoints: HubEndpoints = HubEndpoints()
    probe_timeout_s: float = 10.0
    force: bool = False
    silero_source: str = "package"


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def _partial_dir(target: Path) -> Path:
    """Staging directory next to ``target``: same file system, so the final rename is atomic."""
    return target.parent / f".{target.name}.partial"


def _install(staging: Path, target: Path) -> None:
    """Move a complete ``staging`` directory to ``target``, replacing an incomplete one."""
    target.parent.mkdir(parents=True, exist_ok=True)
    aside = target.parent / f".{target.name}.old-{os.getpid()}"
    if target.exists() or target.is_symlink():
        os.rename(target, aside)
    os.rename(staging, target)
    if aside.exists():
        shutil.rmtree(aside, ignore_errors=True)


def _remove_stale_asides(target: Path) -> None:
    for stale in target.parent.glob(f".{target.name}.old-*"):
        shutil.rmtree(stale, ignore_errors=True)


def _remove_download_metadata(directory: Path) -> None:
    """Drop hub-client bookkeeping (resume metadata, locks) before a directory goes live."""
    for relative in (".cache/huggingface", ".lock", "._____temp"):
        shutil.rmtree(directory / relative, ignore_errors=True)
    cache_dir = directory / ".cache"
    if cache_dir.is_dir() and not any(cache_dir.iterdir()):
        cache_dir.rmdir()


def _require_complete(name: str, directory: Path, what: str) -> None:
    missing = missing_files(directory, MODEL_SPECS[name])
    if missing:
        raise DownloadError(
            f"{name}: {what} finished but {directory} lacks {', '.join(missing)}; "
            "the repository layout may have changed. Partial files are kept for the next run."
        )


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


def _log_skip(model: ResolvedModel) -> None:
    log.info("%s: already complete at %s [%s]", model.name, model.path, model.rule)


# ---------------------------------------------------------------------------
# ModelScope: the Paraformer trio
# ---------------------------------------------------------------------------


def _fetch_modelscope_model(name: str, options: DownloadOptions) -> Path:
    spec = MODEL_SPECS[name]
    resolved = resolve_layout(options.project_root, options.cache).get(name)
    if resolved.complete and not options.force:
        _log_skip(resolved)
        return resolved.path  # type: ignore[return-value]
    endpoint = options.endpoints.modelscope.rstrip("/")
    query = urllib.parse.urlencode({"Revision": MODELSCOPE_REVISION, "Recursive": "True"})
    listing = _probe_json(f"{endpoint}/api/v1/models/{spec.repo_id}/repo/files?{query}", options.probe_timeout_s, name)
    if isinstance(listing, dict) and listing.get("Success") is False:
        raise DownloadError(f"{name}: {endpoint} does not serve {spec.repo_id}: {listing.get('Message', listing)}")

    target = model_paths.modelscope_dir(options.cache.path, name)
    staging = _partial_dir(target)
    _remove_stale_asides(target)
    staging.mkdir(parents=True, exist_ok=True)
    log.info("%s: downloading %s from %s into %s", name, spec.repo_id, endpoint, staging)
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
        # only decides where its lock files go: inside the staging directory.
        snapshot_download(
            spec.repo_id,
            revision=MODELSCOPE_REVISION,
            local_dir=str(staging),
            cache_dir=str(staging),
            endpoint=endpoint,
        )
    except Exception as exc:  # noqa: BLE001 - any client failure becomes one actionable message
        raise DownloadError(
            f"{name}: download of {spec.repo_id} from {endpoint} failed: {exc}. "
            f"Partial files stay in {staging}; run the command again to resume."
        ) from exc
    _require_complete(name, staging, "download")
    _remove_download_metadata(staging)
    _install(staging, target)
    log.info("%s: ready at %s", name, target)
    return target


def fetch_paraformer(options: DownloadOptions) -> list[Path]:
    """SeACo-Paraformer, FSMN-VAD and CT-punc into ``<cache>/models/iic/``."""
    errors: list[str] = []
    paths: list[Path] = []
    for name in ("paraformer", "fsmn_vad", "ct_punc"):
        try:
            paths.append(_fetch_modelscope_model(name, options))
        except DownloadError as exc:
            errors.append(str(exc))
    if errors:
        raise DownloadError("\n".join(errors))
    return paths


# ---------------------------------------------------------------------------
# Hugging Face: SenseVoice (hub cache layout) and the SpeechBrain model
# ---------------------------------------------------------------------------


def _hf_revision(repo_id: str, options: DownloadOptions, what: str) -> tuple[str, set[str] | None]:
    """Commit of ``main`` and the file names of ``repo_id`` (``HF_REVISION``, ``None`` if the probe could not tell)."""
    endpoint = options.endpoints.huggingface.rstrip("/")
    info = _probe_json(f"{endpoint}/api/models/{repo_id}/revision/{HF_REVISION}", options.probe_timeout_s, what)
    if not isinstance(info, dict) or not isinstance(info.get("sha"), str):
        return HF_REVISION, None
    files = {sibling.get("rfilename") for sibling in info.get("siblings") or [] if isinstance(sibling, dict)}
    return info["sha"], files


def _hf_snapshot(repo_id: str, revision: str, options: DownloadOptions, what: str, **kwargs: Any) -> Path:
    from huggingface_hub import snapshot_download

    endpoint = options.endpoints.huggingface.rstrip("/")
    try:
        return Path(
            snapshot_download(
                repo_id,
                revision=revision,
                endpoint=endpoint,
                etag_timeout=options.probe_timeout_s,
                **kwargs,
            )
        )
    except Exception as exc:  # noqa: BLE001 - any client failure becomes one actionable message
        where = kwargs.get("local_dir") or kwargs.get("cache_dir")
        raise DownloadError(
            f"{what}: download of {repo_id}@{revision[:12]} from {endpoint} failed: {exc}. "
            f"Partial files stay in {where}; run the command again to resume."
        ) from exc


def _materialise_symlinks(snapshot: Path) -> None:
    """Replace the snapshot's symlinks into ``blobs/`` by the files themselves.

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
            raise DownloadError(f"sensevoice: {link} points to missing {blob}; run again to re-download it")


def _write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def fetch_sensevoice(options: DownloadOptions) -> Path:
    """SenseVoiceSmall into the Hugging Face cache layout under ``<cache>/huggingface/hub``."""
    name = "sensevoice"
    spec = MODEL_SPECS[name]
    resolved = resolve_layout(options.project_root, options.cache).sensevoice
    if resolved.complete and not options.force:
        _log_skip(resolved)
        return resolved.path  # type: ignore[return-value]
    revision, _ = _hf_revision(spec.repo_id, options, name)

    final_repo = model_paths.sensevoice_repo_dir(options.cache.path)
    staging_hub = _partial_dir(final_repo.parent)  # <cache>/huggingface/.hub.partial
    staging_hub.mkdir(parents=True, exist_ok=True)
    log.info("%s: downloading %s@%s into %s", name, spec.repo_id, revision[:12], staging_hub)
    snapshot = _hf_snapshot(spec.repo_id, revision, options, name, cache_dir=str(staging_hub))
    revision = snapshot.name  # the commit, also when the probe could only say "main"
    _require_complete(name, snapshot, "download")
    _materialise_symlinks(snapshot)
    staging_repo = staging_hub / final_repo.name
    shutil.rmtree(staging_repo / "blobs", ignore_errors=True)
    _write_text_atomic(staging_repo / "refs" / HF_REVISION, revision)

    if not final_repo.exists():
        final_repo.parent.mkdir(parents=True, exist_ok=True)
        os.rename(staging_repo, final_repo)
    else:
        # Keep other snapshots; swap this one in, then point refs/main at it.
        final_snapshot = final_repo / "snapshots" / revision
        _install(snapshot, final_snapshot)
        _write_text_atomic(final_repo / "refs" / HF_REVISION, revision)
        shutil.rmtree(staging_repo, ignore_errors=True)
    shutil.rmtree(staging_hub, ignore_errors=True)
    result = final_repo / "snapshots" / revision
    log.info("%s: ready at %s", name, result)
    return result


def fetch_speechbrain(options: DownloadOptions) -> Path:
    """SpeechBrain emotion model + wav2vec2-base into ``pretrained_models/emotion-recognition-wav2vec2-IEMOCAP``."""
    name = "speechbrain_emotion"
    spec = MODEL_SPECS[name]
    resolved = resolve_layout(options.project_root, options.cache).speechbrain_emotion
    if resolved.complete and not options.force:
        _log_skip(resolved)
        return resolved.path  # type: ignore[return-value]
    emotion_revision, _ = _hf_revision(spec.repo_id, options, name)
    base_revision, base_files = _hf_revision(WAV2VEC2_BASE_REPO_ID, options, name)
    # One weights file is enough (each is ~380 MB): safetensors when the repo has it.
    if base_files is None:
        weights = ["model.safetensors", "pytorch_model.bin"]
    elif "model.safetensors" in base_files or "pytorch_model.bin" not in base_files:
        weights = ["model.safetensors"]
    else:
        weights = ["pytorch_model.bin"]

    target = options.project_root / model_paths.SPEECHBRAIN_EMOTION_SUBDIR
    staging = _partial_dir(target)
    _remove_stale_asides(target)
    staging.mkdir(parents=True, exist_ok=True)
    log.info(
        "%s: downloading %s and %s (%s) into %s",
        name, spec.repo_id, WAV2VEC2_BASE_REPO_ID, " or ".join(weights), staging,
    )
    _hf_snapshot(
        spec.repo_id,
        emotion_revision,
        options,
        name,
        local_dir=str(staging),
        ignore_patterns=["wav2vec2_checkpoints/*"],  # training artefact, not needed for inference
    )
    _hf_snapshot(
        WAV2VEC2_BASE_REPO_ID,
        base_revision,
        options,
        name,
        local_dir=str(staging / "wav2vec2-base"),
        allow_patterns=["config.json", "preprocessor_config.json", *weights],
    )
    _require_complete(name, staging, "download")
    _remove_download_metadata(staging)
    _remove_download_metadata(staging / "wav2vec2-base")
    _install(staging, target)
    log.info("%s: ready at %s", name, target)
    return target


# ---------------------------------------------------------------------------
# Silero VAD torch.hub repository
# ---------------------------------------------------------------------------


def _silero_package() -> tuple[Path, str]:
    spec = importlib.util.find_spec("silero_vad")  # locates the package without importing torch
    if spec is None or not spec.submodule_search_locations:
        raise DownloadError("silero_vad: the silero-vad package is not installed; install requirements.txt first")
    return Path(next(iter(spec.submodule_search_locations))), importlib.metadata.version("silero-vad")


def _materialise_silero_from_package(staging: Path) -> None:
    package_dir, version = _silero_package()
    shutil.copytree(package_dir, staging / "src" / "silero_vad", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (staging / "hubconf.py").write_text(SILERO_HUBCONF, encoding="utf-8")
    (staging / "SOURCE.txt").write_text(
        f"Materialised from the silero-vad=={version} package ({package_dir}) by scripts/download_models.py.\n",
        encoding="utf-8",
    )
    log.info("silero_vad: materialised from the installed silero-vad %s package", version)


def _download_file(url: str, destination: Path, timeout_s: float, what: str) -> None:
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


def _materialise_silero_from_github(staging: Path, options: DownloadOptions) -> None:
    _, version = _silero_package()
    url = options.endpoints.silero_archive_url or SILERO_ARCHIVE_URL_TEMPLATE.format(version=version)
    archive = staging.parent / f"{staging.name}.tar.gz"
    extract_dir = staging.parent / f"{staging.name}.extract"
    shutil.rmtree(extract_dir, ignore_errors=True)
    try:
        log.info("silero_vad: downloading %s", url)
        _download_file(url, archive, options.probe_timeout_s, "silero_vad")
        try:
            with tarfile.open(archive, "r:gz") as tar:
                tar.extractall(extract_dir, filter="data")  # refuses absolute paths and links out of the tree
        except (tarfile.TarError, OSError) as exc:
            raise DownloadError(f"silero_vad: {url} is not a readable .tar.gz archive: {exc}") from exc
        roots = [p for p in extract_dir.iterdir() if p.is_dir()]
        if len(roots) != 1:
            raise DownloadError(f"silero_vad: expected one top-level directory in {url}, found {len(roots)}")
        os.rename(roots[0], staging)
    finally:
        archive.unlink(missing_ok=True)
        shutil.rmtree(extract_dir, ignore_errors=True)


def fetch_silero(options: DownloadOptions) -> Path:
    """A torch.hub-loadable Silero VAD repository at ``<project>/silero-vad``."""
    name = "silero_vad"
    resolved = resolve_layout(options.project_root, options.cache).silero_vad
    if resolved.complete and not options.force:
        _log_skip(resolved)
        return resolved.path  # type: ignore[return-value]
    target = options.project_root / model_paths.SILERO_VAD_SUBDIR
    staging = _partial_dir(target)
    _remove_stale_asides(target)
    shutil.rmtree(staging, ignore_errors=True)  # cheap to redo; nothing worth resuming
    if options.silero_source == "github":
        _materialise_silero_from_github(staging, options)
    elif options.silero_source == "package":
        staging.mkdir(parents=True)
        _materialise_silero_from_package(staging)
    else:
        raise DownloadError(f"silero_vad: unknown source {options.silero_source!r}")
    _require_complete(name, staging, "materialisation")
    _install(staging, target)
    log.info("%s: ready at %s", name, target)
    return target


def fetch_emotion2vec(options: DownloadOptions) -> Path:
    """emotion2vec+ base into ``<cache>/models/iic/emotion2vec_plus_base/``."""
    return _fetch_modelscope_model("emotion2vec", options)


def fetch_speaker(options: DownloadOptions) -> Path:
    """CAM++ into ``<cache>/models/iic/speech_campplus_sv_zh-cn_16k-common/``."""
    return _fetch_modelscope_model(model_paths.SPEAKER_MODEL, options)


#: Per-model flag -> fetcher, in download order.
FETCHERS: dict[str, Callable[[DownloadOptions], Any]] = {
    "paraformer": fetch_paraformer,
    "sensevoice": fetch_sensevoice,
    "speechbrain": fetch_speechbrain,
    "emotion2vec": fetch_emotion2vec,
    "speaker": fetch_speaker,
    "silero": fetch_silero,
}

#: Models each flag covers: every model whose spec names the flag (model_paths is their home).
FLAG_MODELS: dict[str, tuple[str, ...]] = {
    flag: tuple(name for name, spec in model_paths.MODEL_SPECS.items() if spec.download_flag == f"--{flag}")
    for flag in FETCHERS
}


# ---------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Download the service's models (all of them unless model flags are given).",
        epilog="Exit status: 0 when everything asked for is present, 1 otherwise.",
    )
    parser.add_argument(
        "--cache-dir", type=Path,
        help="Where Paraformer and SenseVoice go (default: the MODEL_CACHE_DIR rule); "
        "relative to the current directory.",
    )
    parser.add_argument(
        "--project-root", type=Path, default=None,
        help="Project directory holding pretrained_models/ and silero-vad/ (default: PROJECT_ROOT or this checkout).",
    )
    for flag, models in FLAG_MODELS.items():
        parser.add_argument(f"--{flag}", action="store_true", help=f"Fetch {', '.join(models)}.")
    parser.add_argument("--check", action="store_true", help="Only report what is present/missing; download nothing.")
    parser.add_argument(
        "--mode", choices=model_paths.ASR_MODES, default=None,
        help="With --check: the ASR mode to check for (default both).",
    )
    parser.add_argument("--no-emotion", action="store_true", help="With --check: do not require the emotion model.")
    parser.add_argument(
        "--emotion-model", choices=tuple(model_paths.EMOTION_MODELS), default="speechbrain",
        help="With --check: the emotion model the worker serves (EMOTION_MODEL; default speechbrain).",
    )
    parser.add_argument("--force", action="store_true", help="Download again even when a model is complete.")
    parser.add_argument(
        "--silero-source", choices=("package", "github"), default="package",
        help="Materialise silero-vad/ from the installed package (default, offline) or the GitHub archive.",
    )
    parser.add_argument(
        "--silero-archive-url",
        help="Silero .tar.gz archive URL (implies --silero-source github; "
        "default: the GitHub tag of the installed version).",
    )
    parser.add_argument(
        "--timeout-s", type=float, default=10.0,
        help="Seconds to wait for each hub's first answer before declaring it unreachable.",
    )
    return parser


def _check(layout: model_paths.ModelLayout, names: Sequence[str]) -> int:
    print(layout.describe(names))
    message = layout.missing_message(names)
    if message:
        print(message)
    blocking = layout.incomplete(names, include_optional=False)
    return 1 if blocking else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpx2"):  # one INFO line per HTTP request otherwise
        logging.getLogger(noisy).setLevel(logging.WARNING)

    # This is a command-line entry point, so it reads its environment itself.
    environ = os.environ
    project_root = (args.project_root or Path(environ.get("PROJECT_ROOT") or PROJECT_ROOT)).expanduser().resolve()
    if args.cache_dir is not None:
        cache = ModelCacheDir(args.cache_dir.expanduser().resolve(), "--cache-dir argument")
    else:
        cache = resolve_model_cache_dir(project_root, environ.get("MODEL_CACHE_DIR"))
    flags = [flag for flag in FLAG_MODELS if getattr(args, flag)]

    if args.check:
        if flags:
            names = [name for flag in flags for name in FLAG_MODELS[flag]]
        else:
            names = model_paths.required_models(args.mode or "both", emotion=not args.no_emotion, vad_backend="silero",
                                                emotion_model=args.emotion_model)
        return _check(resolve_layout(project_root, cache), names)
    if args.mode is not None or args.no_emotion:
        _parser().error("--mode and --no-emotion only apply to --check; choose models with the model flags")

    for key, value in LIBRARY_ENV_DEFAULTS.items():
        environ.setdefault(key, value)
    endpoints = HubEndpoints(
        huggingface=environ.get("HF_ENDPOINT") or DEFAULT_HF_ENDPOINT,
        modelscope=(
            environ.get("MODELSCOPE_ENDPOINT") or environ.get("MODELSCOPE_DOMAIN") or DEFAULT_MODELSCOPE_ENDPOINT
        ),
        silero_archive_url=args.silero_archive_url,
    )
    if "://" not in endpoints.modelscope:  # MODELSCOPE_DOMAIN is a bare host name
        endpoints = HubEndpoints(endpoints.huggingface, "https://" + endpoints.modelscope, endpoints.silero_archive_url)
    options = DownloadOptions(
        project_root=project_root,
        cache=cache,
        endpoints=endpoints,
        probe_timeout_s=args.timeout_s,
        force=args.force,
        silero_source="github" if args.silero_archive_url else args.silero_source,
    )
    log.info("model cache: %s [%s]", cache.path, cache.rule)

    failures: dict[str, str] = {}
    for flag in flags or list(FETCHERS):
        try:
            FETCHERS[flag](options)
        except DownloadError as exc:
            failures[flag] = str(exc)
            log.error("%s", exc)
        except KeyboardInterrupt:
            log.error("interrupted; partial downloads are kept in .*.partial directories and resumed next time")
            return 130

    layout = resolve_layout(project_root, cache)
    names = [name for flag in (flags or list(FETCHERS)) for name in FLAG_MODELS[flag]]
    print(layout.describe(names))
    if failures:
        print(f"FAILED: {', '.join('--' + flag for flag in failures)} (see the errors above)", file=sys.stderr)
        return 1
    runtime_cache = resolve_model_cache_dir(project_root, environ.get("MODEL_CACHE_DIR"))
    if runtime_cache.path != cache.path and any(name in model_paths.CACHED_MODELS for name in names):
        print(f"note: start the services with MODEL_CACHE_DIR={cache.path} so they find these models")
    return 0


if __name__ == "__main__":
    sys.exit(main())
