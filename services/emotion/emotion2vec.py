"""emotion2vec+ (``iic/emotion2vec_plus_base``) as a window classifier for :class:`EmotionEngine`.

emotion2vec+ is a data2vec 2.0 audio encoder fine-tuned for nine emotions
(angry, disgusted, fearful, happy, neutral, other, sad, surprised, unknown);
FunASR ships its model code (``funasr.models.emotion2vec``). It is loaded here
with FunASR's own loader, ``AutoModel``, from a local ModelScope-layout
directory only (see :func:`load_emotion2vec_model`), through the same selective
FunASR import and memory-mapped checkpoint loading as the ASR worker's
Paraformer.

:class:`Emotion2vecModel` implements the ``WindowClassifier`` protocol of
``services.emotion.engine``, so windowing of long segments, batching of
equal-length windows, the int8 option, lazy loading, health and metrics are the
SpeechBrain path's, unchanged. ``predict`` does what FunASR's
``Emotion2vec.inference`` does for one waveform (layer-normalise the waveform,
encode, drop the 10 extra tokens, mean over frames, ``proj``, softmax without
the ``unuse*`` classes), for a batch of equal-length windows at once: no
padding, so a window's result does not depend on its batch (the encoder is
given no padding mask, exactly as FunASR gives it none).

Usage::

    model = load_emotion2vec_model(Path(".../models/iic/emotion2vec_plus_base"))
    engine = EmotionEngine(model, EmotionOptions())
    engine.warm_up()
    engine.classify(samples)        # float32 mono 16 kHz -> EmotionResult with 9 scores
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch

from services.common.emotion_labels import emotion2vec_label
from services.common.memory import memory_mb
from services.common.model_paths import MODEL_SPECS, download_command, missing_files

__all__ = ["Emotion2vecModel", "load_emotion2vec_model", "labels_from_tokens"]

log = logging.getLogger(__name__)

_UNUSED_PREFIX = "unuse"  # tokens FunASR's inference masks out (placeholder classes)


def labels_from_tokens(tokens: list[str]) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """``(labels, indices)``: the served labels and their output index, ``unuse*`` tokens skipped."""
    kept = [(emotion2vec_label(token), index) for index, token in enumerate(tokens)
            if not token.startswith(_UNUSED_PREFIX)]
    return tuple(label for label, _ in kept), tuple(index for _, index in kept)


class Emotion2vecModel:
    """The loaded FunASR ``Emotion2vec`` module (read-only after loading)."""

    def __init__(self, module: torch.nn.Module, model_dir: Path, tokens: list[str], quantized: bool = False):
        if getattr(module, "proj", None) is None:
            raise ValueError(f"{model_dir} has no classification head (proj): it is a pre-trained "
                             "emotion2vec encoder, not emotion2vec+; use iic/emotion2vec_plus_base")
        if module.proj.out_features != len(tokens):
            raise ValueError(f"{model_dir}: tokens.txt lists {len(tokens)} classes, "
                             f"the head has {module.proj.out_features}")
        self.module = module.eval()
        self.model_dir = model_dir
        self.tokens = tuple(tokens)
        self.labels, self._indices = labels_from_tokens(tokens)
        self.batch_invariant = not quantized
        self._normalize = bool(module.cfg.get("normalize", False))

    @torch.inference_mode()
    def predict(self, windows: np.ndarray) -> np.ndarray:
        if windows.ndim != 2 or windows.dtype != np.float32:
            raise TypeError("windows must be a (batch, samples) float32 array of equal-length windows")
        source = torch.from_numpy(np.ascontiguousarray(windows))
        if self._normalize:
            # FunASR: F.layer_norm(source, source.shape) on one 1-D waveform = per row here
            source = torch.nn.functional.layer_norm(source, source.shape[-1:])
        try:
            features = self.module.extract_features(source, padding_mask=None)["x"]
            logits = self.module.proj(features.mean(dim=1)).to(torch.float64)
        finally:
            # The encoder caches its ALiBi bias in a dict shared by all calls, grown to the
            # largest batch AND the longest window ever seen (heads x batch x frames^2 floats:
            # 100 short windows after one 15 s window would keep 2.7 GB). Rebuilding it
            # costs well under a millisecond per call.
            self.module.alibi_biases.clear()
        return torch.softmax(logits[:, list(self._indices)], dim=-1).numpy()


def load_emotion2vec_model(model_dir: Path, quantize_int8: bool = False, lean: bool = True) -> Emotion2vecModel:
    """Load emotion2vec+ from ``model_dir`` with FunASR's ``AutoModel``, offline.

    ``model_dir`` is a local directory (never a hub id: ModelScope makes no
    request for a local path), the FunASR import is selective
    (``services.funasr``), and with ``lean`` the checkpoint is
    memory-mapped instead of copied (``services.funasr.lean_loading``).
    ``quantize_int8`` makes every ``nn.Linear`` (attention, feed-forward,
    projections, the head) dynamic int8; convolutions stay float.
    Raises ``FileNotFoundError`` naming the missing files and the download command.
    """
    from services.funasr.automodel import load_automodel

    model_dir = Path(model_dir).absolute()
    missing = missing_files(model_dir, MODEL_SPECS["emotion2vec"])
    if missing:
        raise FileNotFoundError(
            f"emotion2vec+ model directory {model_dir} is incomplete; missing: {', '.join(missing)}. "
            f"Fetch it with `{download_command(['emotion2vec'])}` (on a host with network access) "
            "and copy it here.")
    started = time.monotonic()
    auto = load_automodel(model_dir, torch.get_num_threads(), lean, quantize=quantize_int8)
    tokenizer = auto.kwargs.get("tokenizer")
    tokens = list(getattr(tokenizer, "token_list", None) or [])
    if not tokens:
        raise ValueError(f"{model_dir}: no class names (tokens.txt) reached the tokenizer")
    model = Emotion2vecModel(auto.model, model_dir, tokens, quantized=quantize_int8)
    rss, peak = memory_mb()
    log.info("emotion model loaded from %s in %.1f s (labels %s, int8 %s; rss %.0f MB, peak %.0f MB)",
             model_dir, time.monotonic() - started, ", ".join(model.labels), quantize_int8, rss, peak)
    return model
