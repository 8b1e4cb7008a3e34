"""``funasr.AutoModel`` for a local model directory: selective import, lean loading, int8.

Every worker that serves a FunASR model (ASR: Paraformer, CT-punc, FSMN-VAD,
SenseVoice; VAD: FSMN-VAD; emotion: emotion2vec+; speaker: CAM++) builds it here,
so the options that keep loading offline, quiet and small are written once.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from services.common.memory import memory_mb, trim_heap
from services.common.quantize import quantize_linear_int8
from services.funasr.imports import automodel_class
from services.funasr.lean_loading import lean_checkpoint_loading, load_state_dict_mmap

__all__ = ["load_automodel"]

log = logging.getLogger(__name__)


def load_automodel(model_dir: Path, threads: int, lean: bool = True, quantize: bool = False,
                   **overrides: Any) -> Any:
    """``funasr.AutoModel`` for a local model directory, without any hub access.

    ``lean`` loads through :func:`lean_checkpoint_loading`; ``quantize`` turns
    every ``nn.Linear`` into a dynamic int8 one right after loading.
    """
    AutoModel = automodel_class(model_dir)
    started = time.monotonic()
    kwargs = dict(model=str(model_dir), device="cpu", ncpu=threads, disable_update=True,
                  disable_pbar=True, disable_log=True, log_level="WARNING", **overrides)
    if lean:
        with lean_checkpoint_loading():
            model = AutoModel(**kwargs)
        trim_heap()  # the random initial weights, replaced by the mapped ones
    else:
        model = AutoModel(**kwargs)
    if quantize:
        quantize_linear_int8(model.model, lambda: load_state_dict_mmap(model.kwargs["init_param"]))
        trim_heap()
    rss, peak = memory_mb()
    log.info("loaded %s in %.1f s (rss %.0f MB, peak %.0f MB)", model_dir.name,
             time.monotonic() - started, rss, peak)
    return model
