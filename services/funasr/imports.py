"""Import FunASR with only the model code a worker loads.

``import funasr`` runs ``funasr.import_submodules``, which imports every module
of the package (all ~60 model families, speaker clustering with scikit-learn,
FSDP, transformers...) so that each class registers itself in
``funasr.register.tables``; ``AutoModel`` then looks the names in a model's
``config.yaml`` up there. Measured on this project's CPU torch: ``import
torch`` 218 MB resident, ``import torch, funasr`` 495 MB; importing only the
modules below (plus ``funasr.auto.auto_model``) 336 MB, and 262 MB when
``auto_model`` also does not import the speaker-clustering backend (scikit-learn
and scipy.stats, for diarization models these workers never load: a stand-in
module takes its place and raises if anything tries to use it). Every process
that loads a FunASR model (ASR worker, VAD worker with FSMN, the emotion2vec+ and
speaker workers) saves ~230 MB.

:func:`automodel_class` reads the model directory's ``config.yaml`` first. If
every component it names is in :data:`COMPONENT_MODULES`, only those modules
are imported; otherwise (a model this table does not know) FunASR's own full
import runs, so any model FunASR supports still loads. The table maps each
name to the module whose class wins in FunASR's full import
(``tests/test_funasr_import.py`` checks that against a real full import).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import pkgutil
import sys
import threading
import types
from pathlib import Path
from typing import Any, Iterator

import yaml

__all__ = ["COMPONENT_MODULES", "automodel_class", "component_names"]

log = logging.getLogger(__name__)

COMPONENT_MODULES: dict[str, str] = {
    # SeACo-Paraformer-large
    "SeacoParaformer": "funasr.models.seaco_paraformer.model",
    "SANMEncoder": "funasr.models.sanm.encoder",
    "ParaformerSANMDecoder": "funasr.models.e_paraformer.decoder",
    "CifPredictorV3": "funasr.models.bicif_paraformer.cif_predictor",
    "SpecAugLFR": "funasr.models.specaug.specaug",
    "WavFrontend": "funasr.frontends.wav_frontend",
    "CharTokenizer": "funasr.tokenizer.char_tokenizer",
    # FSMN-VAD
    "FsmnVADStreaming": "funasr.models.fsmn_vad_streaming.model",
    "FSMN": "funasr.models.fsmn_vad_streaming.encoder",
    "WavFrontendOnline": "funasr.frontends.wav_frontend",
    # CT-Transformer punctuation
    "CTTransformer": "funasr.models.ct_transformer.model",
    # SenseVoiceSmall
    "SenseVoiceSmall": "funasr.models.sense_voice.model",
    "SenseVoiceEncoderSmall": "funasr.models.sense_voice.model",
    "SentencepiecesTokenizer": "funasr.tokenizer.sentencepiece_tokenizer",
    # emotion2vec+ (its tokenizer is CharTokenizer, above)
    "Emotion2vec": "funasr.models.emotion2vec.model",
    # CAM++ speaker embedding (its config's frontend is WavFrontend, above)
    "CAMPPlus": "funasr.models.campplus.model",
}

_COMPONENT_KEYS = ("model", "encoder", "decoder", "seaco_decoder", "predictor", "frontend", "specaug",
                   "normalize", "tokenizer", "ctc")
_lock = threading.Lock()


def component_names(model_dir: Path) -> set[str]:
    """The registered class names a FunASR model directory's ``config.yaml`` refers to."""
    config = yaml.safe_load((Path(model_dir) / "config.yaml").read_text(encoding="utf-8")) or {}
    return {value for key, value in config.items() if key in _COMPONENT_KEYS and isinstance(value, str)}


@contextlib.contextmanager
def _skip_funasr_auto_import() -> Iterator[None]:
    """While active, ``import funasr`` imports none of its submodules (its
    ``import_submodules`` walks the package with ``pkgutil.walk_packages``)."""
    original = pkgutil.walk_packages

    def walk(path=None, prefix="", onerror=None):
        if prefix.startswith("funasr."):
            return iter(())
        return original(path, prefix, onerror)

    pkgutil.walk_packages = walk
    try:
        yield
    finally:
        pkgutil.walk_packages = original


def _register_without_source_lines() -> None:
    """Registration without looking up each class's source line.

    ``tables.register`` records where each class is defined, for ``tables.print()``
    only, with ``inspect.getsourcelines``, which on Python 3.11 parses the class's whole
    module with ``ast``: ~0.6 s of the ~3.5 s of CPU an ASR worker (both modes, tiny
    models) spends importing and loading. Here the line is recorded as 0.
    """
    import inspect

    from funasr import register

    register.inspect = types.SimpleNamespace(getfile=inspect.getfile, getsourcelines=lambda obj: ([], 0))


_CLUSTER_BACKEND = "funasr.models.campplus.cluster_backend"


class _NoClusterBackend:
    def __init__(self, *args, **kwargs):
        raise RuntimeError(
            "FunASR speaker clustering (spk_model) is not available in this worker: "
            "services/funasr/imports.py imports FunASR without it")


def _stand_in_cluster_backend() -> None:
    """``auto_model`` imports ``ClusterBackend`` at module level; give it a stand-in."""
    if _CLUSTER_BACKEND not in sys.modules:
        stand_in = types.ModuleType(_CLUSTER_BACKEND, "stand-in: speaker clustering not loaded")
        stand_in.ClusterBackend = _NoClusterBackend
        sys.modules[_CLUSTER_BACKEND] = stand_in


def automodel_class(*model_dirs: Path) -> Any:
    """``funasr.AutoModel``, with the registry holding what ``model_dirs`` need."""
    names = set().union(*(component_names(d) for d in model_dirs))
    unknown = sorted(names - COMPONENT_MODULES.keys())
    with _lock:
        if "funasr" not in sys.modules and not unknown:
            with _skip_funasr_auto_import():
                import funasr  # noqa: F401
            _register_without_source_lines()
            _stand_in_cluster_backend()
        import funasr  # the full import, where it has not run selectively above

        if any(name not in _registered_names() for name in unknown):
            log.info("FunASR: importing all of it for %s (not in the selective table)", ", ".join(unknown))
            funasr.import_submodules("funasr")
        for name in sorted(names & COMPONENT_MODULES.keys()):
            importlib.import_module(COMPONENT_MODULES[name])
        from funasr import AutoModel

    return AutoModel


def _registered_names() -> set[str]:
    from funasr.register import tables

    registered: set[str] = set()
    for attr in dir(tables):
        table = getattr(tables, attr)
        if attr.endswith("_classes") and isinstance(table, dict):
            registered |= set(table)
    return registered
