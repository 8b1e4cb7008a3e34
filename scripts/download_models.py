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

This file is the command line; the work is done by ``scripts/downloads/``:
``hubs.py`` (network), ``staging.py`` (partial directories, atomic install)
and ``models.py`` (one fetcher per model).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Run as `python scripts/download_models.py`, only scripts/ is on sys.path.
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

from scripts.downloads import DownloadError  # noqa: E402
from scripts.downloads.hubs import (  # noqa: E402
    DEFAULT_HF_ENDPOINT,
    DEFAULT_MODELSCOPE_ENDPOINT,
    LIBRARY_ENV_DEFAULTS,
    HubEndpoints,
)
from scripts.downloads.models import (  # noqa: E402
    DownloadOptions,
    fetch_emotion2vec,
    fetch_paraformer,
    fetch_sensevoice,
    fetch_silero,
    fetch_speaker,
    fetch_speechbrain,
)
from services.common import model_paths  # noqa: E402
from services.common.model_paths import ModelCacheDir, resolve_layout, resolve_model_cache_dir  # noqa: E402

__all__ = ["FETCHERS", "FLAG_MODELS", "main"]

log = logging.getLogger("download_models")


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
