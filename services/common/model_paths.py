"""Where each model's files live on disk, and whether they are all there.

Every worker resolves its models through this module at start-up, and
``scripts/download_models.py`` downloads into exactly the layout resolved here,
so "where does the code look" and "where does the downloader write" cannot
drift apart. Resolution only looks at the local file system: it never asks a
model hub (ModelScope's own lookup lists repository files online, which fails
or hangs on an offline host).

The module reads no environment variables and imports nothing heavy (no
torch, no hub client), so the gateway can import it. Callers pass in what the
settings module read::

    layout = resolve_models(Path(settings.project_root), settings.model_cache_dir)
    names = required_models("paraformer", emotion=True, vad_backend="silero")
    log.info("models:\\n%s", layout.describe(names))
    layout.require(names)               # raises ModelFilesMissing, naming the fix
    asr_dir = layout.paraformer.path

Rules (see ``resolve_model_cache_dir`` and ``resolve_layout``):

* ``MODEL_CACHE_DIR`` holds the Paraformer trio, emotion2vec+ and CAM++ (the speaker
  worker's model) in ModelScope layout (under ``models/iic/`` or ``hub/models/iic/``) and
  SenseVoice in Hugging Face cache
  layout (under ``huggingface/hub/``). When it is unset, the first of
  ``<project>/pretrained_models/model_cache``, ``/data/emotion_models`` and
  ``/data/emotion-models`` that exists is used.
* The SpeechBrain emotion model and the Silero VAD torch.hub repository always
  live at fixed paths under the project root.

All paths are derived from the project root or the cache directory, so a copied
project directory resolves the same way at its new location.
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "MODEL_NAMES",
    "OPTIONAL_MODELS",
    "ASR_MODES",
    "DATA_FALLBACK_DIRS",
    "DEFAULT_CACHE_SUBDIR",
    "SPEECHBRAIN_EMOTION_SUBDIR",
    "SILERO_VAD_SUBDIR",
    "HF_HUB_SUBDIR",
    "CACHED_MODELS",
    "EMOTION_MODELS",
    "SPEAKER_MODEL",
    "ModelSpec",
    "MODEL_SPECS",
    "ModelCacheDir",
    "ResolvedModel",
    "ModelLayout",
    "ModelFilesMissing",
    "resolve_model_cache_dir",
    "resolve_layout",
    "resolve_models",
    "required_models",
    "missing_files",
    "download_command",
    "modelscope_dir",
    "hf_repo_folder",
    "sensevoice_repo_dir",
]

log = logging.getLogger(__name__)

#: Every model the services know about, in the order they are reported.
MODEL_NAMES: tuple[str, ...] = (
    "paraformer",
    "fsmn_vad",
    "ct_punc",
    "sensevoice",
    "speechbrain_emotion",
    "silero_vad",
    "emotion2vec",
    "campplus",
)

#: Models a service can run without: the VAD worker falls back to the Silero
#: model bundled in the ``silero-vad`` PyPI package when ``silero-vad/`` is absent.
OPTIONAL_MODELS: frozenset[str] = frozenset({"silero_vad"})

#: Accepted values of the ASR mode.
ASR_MODES: tuple[str, ...] = ("paraformer", "sensevoice", "both")

#: Cache directories tried, in order, when MODEL_CACHE_DIR is unset and the
#: project has no ``pretrained_models/model_cache``.
DATA_FALLBACK_DIRS: tuple[Path, ...] = (Path("/data/emotion_models"), Path("/data/emotion-models"))

#: Default cache directory, relative to the project root.
DEFAULT_CACHE_SUBDIR = Path("pretrained_models") / "model_cache"
#: Fixed location of the SpeechBrain emotion model, relative to the project root.
SPEECHBRAIN_EMOTION_SUBDIR = Path("pretrained_models") / "emotion-recognition-wav2vec2-IEMOCAP"
#: Fixed location of the Silero VAD torch.hub repository, relative to the project root.
SILERO_VAD_SUBDIR = Path("silero-vad")

_MODELSCOPE_LAYOUTS: tuple[tuple[Path, str], ...] = (
    (Path("models") / "iic", "models/iic layout"),
    (Path("hub") / "models" / "iic", "hub/models/iic layout"),
)
#: Hugging Face hub cache inside the model cache directory.
HF_HUB_SUBDIR = Path("huggingface") / "hub"


@dataclass(frozen=True)
class ModelSpec:
    """What one model is, where it comes from and which files make it usable.

    ``required_files`` are paths relative to the model directory. An entry is a
    tuple of alternatives: any one of them present satisfies it (e.g. weights
    as ``pytorch_model.bin`` or ``model.safetensors``).
    """

    name: str
    description: str
    hub: str
    repo_id: str
    required_files: tuple[tuple[str, ...], ...]
    download_flag: str


def _files(*entries: str | tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    return tuple(entry if isinstance(entry, tuple) else (entry,) for entry in entries)


MODEL_SPECS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="paraformer",
            description="SeACo-Paraformer large ASR (zh, 16 kHz)",
            hub="modelscope",
            repo_id="iic/speech_seaco_paraformer_large_asr_nat-zh-cn-16k-common-vocab8404-pytorch",
            required_files=_files("config.yaml", "configuration.json", "am.mvn", "tokens.json", "seg_dict", "model.pt"),
            download_flag="--paraformer",
        ),
        ModelSpec(
            name="fsmn_vad",
            description="FSMN-VAD (16 kHz)",
            hub="modelscope",
            repo_id="iic/speech_fsmn_vad_zh-cn-16k-common-pytorch",
            required_files=_files("config.yaml", "configuration.json", "am.mvn", "model.pt"),
            download_flag="--paraformer",
        ),
        ModelSpec(
            name="ct_punc",
            description="CT-Transformer punctuation (zh/en)",
            hub="modelscope",
            repo_id="iic/punc_ct-transformer_cn-en-common-vocab471067-large",
            required_files=_files("config.yaml", "configuration.json", "tokens.json", "jieba_usr_dict", "model.pt"),
            download_flag="--paraformer",
        ),
        ModelSpec(
            name="sensevoice",
            description="SenseVoiceSmall ASR",
            hub="huggingface",
            repo_id="FunAudioLLM/SenseVoiceSmall",
            required_files=_files(
                "config.yaml", "configuration.json", "am.mvn", "chn_jpn_yue_eng_ko_spectok.bpe.model", "model.pt"
            ),
            download_flag="--sensevoice",
        ),
        ModelSpec(
            name="speechbrain_emotion",
            description="SpeechBrain wav2vec2 IEMOCAP emotion classifier",
            hub="huggingface",
            repo_id="speechbrain/emotion-recognition-wav2vec2-IEMOCAP",
            required_files=_files(
                "model.ckpt",
                "wav2vec2.ckpt",
                "hyperparams.yaml",
                "custom_interface.py",
                "label_encoder.txt",
                "wav2vec2-base/config.json",
                # SpeechBrain's wav2vec2 wrapper always loads the feature extractor.
                "wav2vec2-base/preprocessor_config.json",
                ("wav2vec2-base/model.safetensors", "wav2vec2-base/pytorch_model.bin"),
            ),
            download_flag="--speechbrain",
        ),
        ModelSpec(
            name="emotion2vec",
            description="emotion2vec+ base speech emotion classifier (9 classes)",
            hub="modelscope",
            repo_id="iic/emotion2vec_plus_base",
            required_files=_files("config.yaml", "configuration.json", "tokens.txt", "model.pt"),
            download_flag="--emotion2vec",
        ),
        ModelSpec(
            name="campplus",
            description="CAM++ speaker embedding (zh-cn 16 kHz, 192-dim; the speaker worker)",
            hub="modelscope",
            repo_id="iic/speech_campplus_sv_zh-cn_16k-common",
            # configuration.json's file_path_metas name the other two for FunASR's loader
            required_files=_files("configuration.json", "config.yaml", "campplus_cn_common.bin"),
            download_flag="--speaker",
        ),
        ModelSpec(
            name="silero_vad",
            description="Silero VAD torch.hub repository",
            hub="github",
            repo_id="snakers4/silero-vad",
            required_files=_files("hubconf.py", "src/silero_vad/utils_vad.py", "src/silero_vad/data/silero_vad.jit"),
            download_flag="--silero",
        ),
    )
}

#: Models stored in MODEL_CACHE_DIR (all others live at fixed project paths).
CACHED_MODELS: tuple[str, ...] = ("paraformer", "fsmn_vad", "ct_punc", "sensevoice", "emotion2vec", "campplus")

#: Emotion models the emotion worker can serve (EMOTION_MODEL) -> the model's name here.
EMOTION_MODELS: dict[str, str] = {"speechbrain": "speechbrain_emotion", "emotion2vec": "emotion2vec"}

#: The model the speaker worker serves.
SPEAKER_MODEL = "campplus"


def modelscope_dir(cache_dir: Path, name: str) -> Path:
    """Directory of a ModelScope model in the ``models/iic/`` layout (where downloads go)."""
    spec = MODEL_SPECS[name]
    if spec.hub != "modelscope":
        raise ValueError(f"{name} is not a ModelScope model")
    return cache_dir / _MODELSCOPE_LAYOUTS[0][0] / spec.repo_id.split("/", 1)[1]


def hf_repo_folder(repo_id: str) -> str:
    """Folder name of a model repository in a Hugging Face hub cache."""
    return "models--" + repo_id.replace("/", "--")


def sensevoice_repo_dir(cache_dir: Path) -> Path:
    """SenseVoice's repository folder in the Hugging Face cache inside ``cache_dir``."""
    return cache_dir / HF_HUB_SUBDIR / hf_repo_folder(MODEL_SPECS["sensevoice"].repo_id)


@dataclass(frozen=True)
class ModelCacheDir:
    """The resolved MODEL_CACHE_DIR and the rule that chose it."""

    path: Path
    rule: str

    @property
    def exists(self) -> bool:
        return self.path.is_dir()


@dataclass(frozen=True)
class ResolvedModel:
    """Where one model was found and what, if anything, is missing there.

    ``path`` is the model directory when it could be determined (for a model
    that is absent: the directory the downloader would create), ``None`` when
    it is ambiguous. ``rule`` says in words why this path was chosen.
    ``missing`` lists required files absent from ``path``; ``complete`` is true
    exactly when ``path`` is known and nothing is missing.
    """

    name: str
    path: Path | None
    rule: str
    missing: tuple[str, ...]
    complete: bool

    def __post_init__(self) -> None:
        if self.complete and (self.path is None or self.missing):
            raise ValueError(f"{self.name}: complete=True needs a path and no missing files")

    @property
    def optional(self) -> bool:
        return self.name in OPTIONAL_MODELS


class ModelFilesMissing(RuntimeError):
    """Required model files are absent; the message names them and the fix."""

    def __init__(self, message: str, models: Sequence[ResolvedModel]) -> None:
        super().__init__(message)
        self.models = tuple(models)


@dataclass(frozen=True)
class ModelLayout:
    """Resolution result for every model; see the module docstring."""

    project_root: Path
    cache: ModelCacheDir
    paraformer: ResolvedModel
    fsmn_vad: ResolvedModel
    ct_punc: ResolvedModel
    sensevoice: ResolvedModel
    speechbrain_emotion: ResolvedModel
    silero_vad: ResolvedModel
    emotion2vec: ResolvedModel
    campplus: ResolvedModel

    def get(self, name: str) -> ResolvedModel:
        """The resolved model called ``name`` (one of ``MODEL_NAMES``)."""
        if name not in MODEL_NAMES:
            raise KeyError(f"unknown model {name!r}; known: {', '.join(MODEL_NAMES)}")
        return getattr(self, name)

    def models(self, names: Iterable[str] | None = None) -> tuple[ResolvedModel, ...]:
        """The resolved models called ``names`` (all when ``None``), without duplicates."""
        wanted = MODEL_NAMES if names is None else tuple(dict.fromkeys(names))
        return tuple(self.get(name) for name in wanted)

    def incomplete(
        self, names: Iterable[str] | None = None, *, include_optional: bool = True
    ) -> tuple[ResolvedModel, ...]:
        """Models among ``names`` that are not complete."""
        return tuple(
            model
            for model in self.models(names)
            if not model.complete and (include_optional or not model.optional)
        )

    def describe(self, names: Iterable[str] | None = None) -> str:
        """Multi-line report for logs: cache dir, then one line per model."""
        cache_state = "" if self.cache.exists else " (does not exist)"
        lines = [f"model cache: {self.cache.path} [{self.cache.rule}]{cache_state}"]
        for model in self.models(names):
            if model.complete:
                state = "ok"
            else:
                state = ("optional, " if model.optional else "") + "MISSING " + ", ".join(model.missing)
            lines.append(f"  {model.name}: {model.path if model.path is not None else '?'} [{model.rule}] {state}")
        return "\n".join(lines)

    def missing_message(self, names: Iterable[str] | None = None) -> str:
        """What is missing among ``names`` and the command that fetches it.

        Returns an empty string when everything asked for is complete.
        """
        absent = self.incomplete(names)
        if not absent:
            return ""
        lines = ["Model files are missing:"]
        for model in absent:
            where = str(model.path) if model.path is not None else "(location ambiguous)"
            note = (
                " (optional: the VAD worker falls back to the model bundled in the silero-vad package)"
                if model.optional
                else ""
            )
            lines.append(f"  - {model.name}: {where} [{model.rule}]{note}")
            lines.append(f"      missing: {', '.join(model.missing)}")
        custom_cache = None if self.cache.path == self.project_root / DEFAULT_CACHE_SUBDIR else self.cache.path
        command = download_command([model.name for model in absent], custom_cache)
        lines.append(f"Fetch them (on a machine with network access, from {self.project_root}) with:")
        lines.append(f"  {command}")
        copy = "pretrained_models/ and silero-vad/"
        if custom_cache is not None:
            copy += f" (and the model cache {custom_cache})"
        lines.append(f"then copy {copy} to this host.")
        return "\n".join(lines)

    def require(self, names: Iterable[str]) -> None:
        """Raise ``ModelFilesMissing`` unless every non-optional model in ``names`` is complete."""
        names = tuple(names)
        blocking = self.incomplete(names, include_optional=False)
        if blocking:
            message = self.missing_message([model.name for model in blocking])
            raise ModelFilesMissing(message, blocking)
        for model in self.incomplete(names):
            log.warning(
                "optional model %s incomplete at %s: missing %s", model.name, model.path, ", ".join(model.missing)
            )


def download_command(names: Iterable[str], cache_dir: Path | None = None) -> str:
    """The ``scripts/download_models.py`` command line that fetches ``names``.

    Pass ``cache_dir`` when the model cache is not the project default:
    ``--cache-dir`` is then added (if a cache-resident model is wanted) so the
    files land where they are looked for.
    """
    names = tuple(dict.fromkeys(names))
    flags = list(dict.fromkeys(MODEL_SPECS[name].download_flag for name in names))
    parts = ["python", "scripts/download_models.py", *flags]
    uses_cache = any(name in CACHED_MODELS for name in names)
    if uses_cache and cache_dir is not None:
        parts += ["--cache-dir", str(cache_dir)]
    return shlex.join(parts)


def missing_files(model_dir: Path, spec: ModelSpec) -> tuple[str, ...]:
    """Required files of ``spec`` that are not regular files under ``model_dir``."""
    absent = []
    for alternatives in spec.required_files:
        if not any((model_dir / relative).is_file() for relative in alternatives):
            absent.append(" or ".join(alternatives))
    return tuple(absent)


def _all_files(spec: ModelSpec) -> tuple[str, ...]:
    return tuple(" or ".join(alternatives) for alternatives in spec.required_files)


def _check(name: str, path: Path, rule: str) -> ResolvedModel:
    missing = missing_files(path, MODEL_SPECS[name])
    return ResolvedModel(name=name, path=path, rule=rule, missing=missing, complete=not missing)


def _absent(name: str, path: Path | None, rule: str) -> ResolvedModel:
    return ResolvedModel(name=name, path=path, rule=rule, missing=_all_files(MODEL_SPECS[name]), complete=False)


def resolve_model_cache_dir(
    project_root: Path,
    model_cache_env: str | None,
    data_fallbacks: Sequence[Path] = DATA_FALLBACK_DIRS,
) -> ModelCacheDir:
    """Pick the model cache directory.

    ``model_cache_env`` is the raw MODEL_CACHE_DIR value (``None`` or empty when
    unset); a relative value is taken relative to ``project_root``, because
    workers are not guaranteed to start in it. Otherwise the first existing of
    ``<project_root>/pretrained_models/model_cache`` and ``data_fallbacks``
    wins; when none exists the project default is returned (and reported as
    missing by the model checks).
    """
    if model_cache_env is not None and model_cache_env.strip():
        path = Path(model_cache_env.strip()).expanduser()
        if not path.is_absolute():
            path = project_root / path
        return ModelCacheDir(path, "MODEL_CACHE_DIR from environment")
    default = project_root / DEFAULT_CACHE_SUBDIR
    if default.is_dir():
        return ModelCacheDir(default, "default pretrained_models/model_cache")
    for fallback in data_fallbacks:
        if fallback.is_dir():
            return ModelCacheDir(fallback, f"{fallback} fallback")
    return ModelCacheDir(default, "default pretrained_models/model_cache")


def _resolve_modelscope(name: str, cache: ModelCacheDir) -> ResolvedModel:
    repo_name = MODEL_SPECS[name].repo_id.split("/", 1)[1]
    found: list[ResolvedModel] = []
    for subdir, layout_rule in _MODELSCOPE_LAYOUTS:
        candidate = cache.path / subdir / repo_name
        if candidate.is_dir():
            resolved = _check(name, candidate, f"{cache.rule}, {layout_rule}")
            if resolved.complete:
                return resolved
            found.append(resolved)
    if found:
        return found[0]
    expected = cache.path / _MODELSCOPE_LAYOUTS[0][0] / repo_name
    return _absent(name, expected, f"{cache.rule}, not found under models/iic or hub/models/iic")


def _resolve_sensevoice(cache: ModelCacheDir) -> ResolvedModel:
    name = "sensevoice"
    repo_dir = sensevoice_repo_dir(cache.path)
    ref_file = repo_dir / "refs" / "main"
    if ref_file.is_file():
        revision = ref_file.read_text(encoding="utf-8").strip()
        rule = f"{cache.rule}, HF cache snapshot refs/main -> {revision}"
        if not revision or "/" in revision or revision in {".", ".."}:
            return _absent(name, None, f"{cache.rule}, HF cache refs/main holds no valid revision")
        snapshot = repo_dir / "snapshots" / revision
        return _check(name, snapshot, rule) if snapshot.is_dir() else _absent(name, snapshot, rule)
    snapshots_dir = repo_dir / "snapshots"
    snapshots = sorted(p for p in snapshots_dir.iterdir() if p.is_dir()) if snapshots_dir.is_dir() else []
    if len(snapshots) == 1:
        only = snapshots[0]
        return _check(name, only, f"{cache.rule}, HF cache snapshot {only.name} (refs/main missing, only snapshot)")
    if len(snapshots) > 1:
        return _absent(
            name,
            None,
            f"{cache.rule}, HF cache refs/main missing and {len(snapshots)} snapshots under {snapshots_dir}: ambiguous",
        )
    return _absent(name, repo_dir, f"{cache.rule}, HF cache layout under huggingface/hub, not found")


def resolve_layout(project_root: Path, cache: ModelCacheDir) -> ModelLayout:
    """Resolve every model given an already chosen cache directory."""
    return ModelLayout(
        project_root=project_root,
        cache=cache,
        paraformer=_resolve_modelscope("paraformer", cache),
        fsmn_vad=_resolve_modelscope("fsmn_vad", cache),
        ct_punc=_resolve_modelscope("ct_punc", cache),
        sensevoice=_resolve_sensevoice(cache),
        speechbrain_emotion=_check("speechbrain_emotion", project_root / SPEECHBRAIN_EMOTION_SUBDIR, "fixed path"),
        silero_vad=_check("silero_vad", project_root / SILERO_VAD_SUBDIR, "fixed path"),
        emotion2vec=_resolve_modelscope("emotion2vec", cache),
        campplus=_resolve_modelscope("campplus", cache),
    )


def resolve_models(
    project_root: Path,
    model_cache_env: str | None,
    data_fallbacks: Sequence[Path] = DATA_FALLBACK_DIRS,
) -> ModelLayout:
    """Resolve every model from the project root and the raw MODEL_CACHE_DIR value."""
    project_root = Path(project_root)
    return resolve_layout(project_root, resolve_model_cache_dir(project_root, model_cache_env, data_fallbacks))


def required_models(mode: str, emotion: bool, vad_backend: str | None,
                    emotion_model: str = "speechbrain", speaker: bool = False) -> list[str]:
    """Names of the models a deployment needs.

    ``mode`` is the ASR mode (``paraformer``: the SeACo-Paraformer + FSMN-VAD +
    CT-punc trio; ``sensevoice``; ``both``). ``emotion`` adds the emotion
    classifier ``emotion_model`` names (``speechbrain`` or ``emotion2vec``, see
    :data:`EMOTION_MODELS`). ``vad_backend`` ``"silero"`` adds Silero VAD (optional, see
    ``OPTIONAL_MODELS``), ``"fsmn"`` adds FSMN-VAD; other values (or ``None``)
    need no VAD model. ``speaker`` adds the speaker worker's model (CAM++).
    """
    if mode not in ASR_MODES:
        raise ValueError(f"unknown ASR mode {mode!r}; expected one of {', '.join(ASR_MODES)}")
    names: list[str] = []
    if mode in ("paraformer", "both"):
        names += ["paraformer", "fsmn_vad", "ct_punc"]
    if mode in ("sensevoice", "both"):
        names.append("sensevoice")
    if emotion:
        if emotion_model not in EMOTION_MODELS:
            raise ValueError(f"unknown emotion model {emotion_model!r}; expected one of {', '.join(EMOTION_MODELS)}")
        names.append(EMOTION_MODELS[emotion_model])
    backend = (vad_backend or "").strip().lower().replace("-", "_")
    if backend == "silero":
        names.append("silero_vad")
    elif backend in ("fsmn", "fsmn_vad"):
        names.append("fsmn_vad")
    if speaker:
        names.append(SPEAKER_MODEL)
    return list(dict.fromkeys(names))
