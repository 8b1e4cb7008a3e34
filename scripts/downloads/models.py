"""One fetcher per model: a hub download into a staging directory, installed once complete.

Each ``fetch_*`` takes ``DownloadOptions``, returns where the model now is, and
raises a DownloadError (from :mod:`scripts.downloads`) when it cannot get it.
A model that is already complete is left alone unless ``force``. The targets are
the layout ``services/common/model_paths.py`` resolves:

* ``fetch_paraformer``, ``fetch_emotion2vec``, ``fetch_speaker``: ModelScope
  models, flat under ``<cache>/models/iic/<name>/``.
* ``fetch_sensevoice``: Hugging Face cache layout under ``<cache>/huggingface/hub``,
  its snapshot holding real files instead of symlinks into ``blobs/``.
* ``fetch_speechbrain``: the SpeechBrain emotion model plus ``facebook/wav2vec2-base``
  under ``pretrained_models/``.
* ``fetch_silero``: a torch.hub-loadable ``silero-vad/``, from the installed
  package (``SILERO_HUBCONF`` is its entry point) or the GitHub release archive.

The network side is :mod:`scripts.downloads.hubs`, the file system side
:mod:`scripts.downloads.staging`; the command line is ``scripts/download_models.py``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import os
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path

from scripts.downloads import DownloadError
from scripts.downloads.hubs import (
    HF_REVISION,
    HubEndpoints,
    download_file,
    hf_revision,
    hf_snapshot,
    modelscope_snapshot,
    probe_modelscope,
)
from scripts.downloads.staging import (
    install,
    materialise_symlinks,
    partial_dir,
    remove_download_metadata,
    remove_stale_asides,
    require_complete,
    write_text_atomic,
)
from services.common import model_paths
from services.common.model_paths import MODEL_SPECS, ModelCacheDir, resolve_layout

__all__ = [
    "DownloadOptions",
    "SILERO_HUBCONF",
    "fetch_paraformer",
    "fetch_sensevoice",
    "fetch_speechbrain",
    "fetch_emotion2vec",
    "fetch_speaker",
    "fetch_silero",
]

log = logging.getLogger("download_models")  # the tool's one logger (see scripts/downloads/__init__.py)

WAV2VEC2_BASE_REPO_ID = "facebook/wav2vec2-base"
SILERO_ARCHIVE_URL_TEMPLATE = "https://github.com/snakers4/silero-vad/archive/refs/tags/v{version}.tar.gz"

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


def _already_complete(name: str, options: DownloadOptions) -> Path | None:
    """Where model ``name`` already is complete (logged), or ``None`` when it is to be fetched."""
    resolved = resolve_layout(options.project_root, options.cache).get(name)
    if resolved.complete and not options.force:
        log.info("%s: already complete at %s [%s]", resolved.name, resolved.path, resolved.rule)
        return resolved.path
    return None


# ---------------------------------------------------------------------------
# ModelScope: the Paraformer trio, emotion2vec+, CAM++
# ---------------------------------------------------------------------------


def _fetch_modelscope_model(name: str, options: DownloadOptions) -> Path:
    existing = _already_complete(name, options)
    if existing is not None:
        return existing
    repo_id = MODEL_SPECS[name].repo_id
    probe_modelscope(options.endpoints.modelscope, repo_id, options.probe_timeout_s, name)

    target = model_paths.modelscope_dir(options.cache.path, name)
    staging = partial_dir(target)
    remove_stale_asides(target)
    staging.mkdir(parents=True, exist_ok=True)
    modelscope_snapshot(options.endpoints.modelscope, repo_id, staging, name)
    require_complete(name, staging, "download")
    remove_download_metadata(staging)
    install(staging, target)
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


def fetch_emotion2vec(options: DownloadOptions) -> Path:
    """emotion2vec+ base into ``<cache>/models/iic/emotion2vec_plus_base/``."""
    return _fetch_modelscope_model("emotion2vec", options)


def fetch_speaker(options: DownloadOptions) -> Path:
    """CAM++ into ``<cache>/models/iic/speech_campplus_sv_zh-cn_16k-common/``."""
    return _fetch_modelscope_model(model_paths.SPEAKER_MODEL, options)


# ---------------------------------------------------------------------------
# Hugging Face: SenseVoice (hub cache layout) and the SpeechBrain model
# ---------------------------------------------------------------------------


def fetch_sensevoice(options: DownloadOptions) -> Path:
    """SenseVoiceSmall into the Hugging Face cache layout under ``<cache>/huggingface/hub``."""
    name = "sensevoice"
    existing = _already_complete(name, options)
    if existing is not None:
        return existing
    repo_id = MODEL_SPECS[name].repo_id
    endpoint, timeout_s = options.endpoints.huggingface, options.probe_timeout_s
    revision, _ = hf_revision(endpoint, repo_id, timeout_s, name)

    final_repo = model_paths.sensevoice_repo_dir(options.cache.path)
    staging_hub = partial_dir(final_repo.parent)  # <cache>/huggingface/.hub.partial
    staging_hub.mkdir(parents=True, exist_ok=True)
    log.info("%s: downloading %s@%s into %s", name, repo_id, revision[:12], staging_hub)
    snapshot = hf_snapshot(endpoint, repo_id, revision, timeout_s, name, cache_dir=str(staging_hub))
    revision = snapshot.name  # the commit, also when the probe could only say "main"
    require_complete(name, snapshot, "download")
    materialise_symlinks(snapshot, name)
    staging_repo = staging_hub / final_repo.name
    shutil.rmtree(staging_repo / "blobs", ignore_errors=True)
    write_text_atomic(staging_repo / "refs" / HF_REVISION, revision)

    if not final_repo.exists():
        final_repo.parent.mkdir(parents=True, exist_ok=True)
        os.rename(staging_repo, final_repo)
    else:
        # Keep other snapshots; swap this one in, then point refs/main at it.
        final_snapshot = final_repo / "snapshots" / revision
        install(snapshot, final_snapshot)
        write_text_atomic(final_repo / "refs" / HF_REVISION, revision)
        shutil.rmtree(staging_repo, ignore_errors=True)
    shutil.rmtree(staging_hub, ignore_errors=True)
    result = final_repo / "snapshots" / revision
    log.info("%s: ready at %s", name, result)
    return result


def fetch_speechbrain(options: DownloadOptions) -> Path:
    """SpeechBrain emotion model + wav2vec2-base into ``pretrained_models/emotion-recognition-wav2vec2-IEMOCAP``."""
    name = "speechbrain_emotion"
    existing = _already_complete(name, options)
    if existing is not None:
        return existing
    repo_id = MODEL_SPECS[name].repo_id
    endpoint, timeout_s = options.endpoints.huggingface, options.probe_timeout_s
    emotion_revision, _ = hf_revision(endpoint, repo_id, timeout_s, name)
    base_revision, base_files = hf_revision(endpoint, WAV2VEC2_BASE_REPO_ID, timeout_s, name)
    # One weights file is enough (each is ~380 MB): safetensors when the repo has it.
    if base_files is None:
        weights = ["model.safetensors", "pytorch_model.bin"]
    elif "model.safetensors" in base_files or "pytorch_model.bin" not in base_files:
        weights = ["model.safetensors"]
    else:
        weights = ["pytorch_model.bin"]

    target = options.project_root / model_paths.SPEECHBRAIN_EMOTION_SUBDIR
    staging = partial_dir(target)
    remove_stale_asides(target)
    staging.mkdir(parents=True, exist_ok=True)
    log.info(
        "%s: downloading %s and %s (%s) into %s",
        name, repo_id, WAV2VEC2_BASE_REPO_ID, " or ".join(weights), staging,
    )
    hf_snapshot(
        endpoint,
        repo_id,
        emotion_revision,
        timeout_s,
        name,
        local_dir=str(staging),
        ignore_patterns=["wav2vec2_checkpoints/*"],  # training artefact, not needed for inference
    )
    hf_snapshot(
        endpoint,
        WAV2VEC2_BASE_REPO_ID,
        base_revision,
        timeout_s,
        name,
        local_dir=str(staging / "wav2vec2-base"),
        allow_patterns=["config.json", "preprocessor_config.json", *weights],
    )
    require_complete(name, staging, "download")
    remove_download_metadata(staging)
    remove_download_metadata(staging / "wav2vec2-base")
    install(staging, target)
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


def _materialise_silero_from_github(staging: Path, options: DownloadOptions) -> None:
    _, version = _silero_package()
    url = options.endpoints.silero_archive_url or SILERO_ARCHIVE_URL_TEMPLATE.format(version=version)
    archive = staging.parent / f"{staging.name}.tar.gz"
    extract_dir = staging.parent / f"{staging.name}.extract"
    shutil.rmtree(extract_dir, ignore_errors=True)
    try:
        log.info("silero_vad: downloading %s", url)
        download_file(url, archive, options.probe_timeout_s, "silero_vad")
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
    existing = _already_complete(name, options)
    if existing is not None:
        return existing
    target = options.project_root / model_paths.SILERO_VAD_SUBDIR
    staging = partial_dir(target)
    remove_stale_asides(target)
    shutil.rmtree(staging, ignore_errors=True)  # cheap to redo; nothing worth resuming
    if options.silero_source == "github":
        _materialise_silero_from_github(staging, options)
    elif options.silero_source == "package":
        staging.mkdir(parents=True)
        _materialise_silero_from_package(staging)
    else:
        raise DownloadError(f"silero_vad: unknown source {options.silero_source!r}")
    require_complete(name, staging, "materialisation")
    install(staging, target)
    log.info("%s: ready at %s", name, target)
    return target
