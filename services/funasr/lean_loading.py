"""Load FunASR checkpoints without the memory spikes of FunASR's own loader.

FunASR 1.4's ``load_pretrained_model`` (``funasr/train_utils/
load_pretrained_model.py``) reads the whole checkpoint into anonymous memory,
deep-copies it, and then copies it into the randomly initialised model: the
model, the checkpoint and the copy are alive at once, and glibc keeps most of
the freed memory afterwards. For the Paraformer trio that is about 6.2 GB peak
and 4.4 GB resident for weights of about 1.8 GB.

:func:`lean_checkpoint_loading` swaps in :func:`lean_load_pretrained_model`
*while models are being built*: the checkpoint is memory-mapped
(``torch.load(mmap=True, weights_only=True)``) and its tensors become the
model's parameters (``load_state_dict(assign=True)``), so nothing is copied.
Pages are read from the file on first touch; rows of CT-Transformer's 471067-row
embedding that no text ever uses are never read at all.
``services.common.memory.trim_heap`` (glibc ``malloc_trim(0)``) returns freed
heap memory to the system between model loads.

The model is still constructed first, and construction fills every weight
with random numbers that the checkpoint then replaces: for CT-punc (a 970 MB
embedding) and Paraformer that random model was the load peak, the whole
fp32 model in memory before a single int8 weight existed. So inside the block
``torch.nn.init``'s random fills are no-ops (:func:`skip_random_init`): the
weights are allocated (``torch.empty``) but never written, so their pages are
never made resident, and ``load_state_dict(assign=True)`` swaps them for the
mapped checkpoint tensors before anything reads them. A weight the checkpoint
lacks (it would have kept its random value) is zero-filled with a warning.

Remove the swap when FunASR's loader stops copying (check
``load_pretrained_model`` for ``copy.deepcopy``) or exposes ``mmap``/``assign``
itself; the context manager restores the original on exit either way.

Usage::

    with lean_checkpoint_loading():
        model = AutoModel(model=str(model_dir), disable_update=True, device="cpu")
    trim_heap()
    log.info("rss %.0f MB, peak %.0f MB", *memory_mb())
"""

from __future__ import annotations

import contextlib
import functools
import logging
import pickle
import threading
from pathlib import Path
from typing import Any, Iterator

import torch

__all__ = [
    "RANDOM_INITS",
    "skip_random_init",
    "lean_checkpoint_loading",
    "lean_load_pretrained_model",
    "load_state_dict_mmap",
]

log = logging.getLogger(__name__)

_swap_lock = threading.Lock()

RANDOM_INITS = ("uniform_", "normal_", "trunc_normal_", "kaiming_uniform_", "kaiming_normal_",
                "xavier_uniform_", "xavier_normal_", "orthogonal_")
"""``torch.nn.init`` functions that write random values into a whole tensor."""


def _keep(tensor: torch.Tensor, *_args: Any, **_kwargs: Any) -> torch.Tensor:
    return tensor


@contextlib.contextmanager
def skip_random_init() -> Iterator[None]:
    """Make :data:`RANDOM_INITS` no-ops inside the block (process-wide: call under ``_swap_lock``).

    Modules call them through the ``torch.nn.init`` module at construction time
    (``init.kaiming_uniform_(self.weight, ...)``), so patching the module's
    attributes covers every layer built inside the block. Weights are left
    uninitialised; only use it when a checkpoint replaces them.
    """
    import torch.nn.init as init

    originals = {name: getattr(init, name) for name in RANDOM_INITS}
    for name in RANDOM_INITS:
        setattr(init, name, _keep)
    try:
        yield
    finally:
        for name, function in originals.items():
            setattr(init, name, function)


def _load_checkpoint(path: str, mmap: bool) -> Any:
    if not mmap:
        return torch.load(path, map_location="cpu", weights_only=True)
    try:
        return torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except (RuntimeError, pickle.UnpicklingError) as exc:
        # Legacy (non-zip) checkpoints cannot be memory-mapped.
        log.info("cannot mmap %s (%s); reading it into memory", path, exc)
        return torch.load(path, map_location="cpu", weights_only=True)


def load_state_dict_mmap(path: str) -> dict[str, torch.Tensor]:
    """A checkpoint's state dict, memory-mapped where the format allows."""
    return _unwrap(_load_checkpoint(path, mmap=True))


def _unwrap(state: Any) -> dict[str, torch.Tensor]:
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    return state


def lean_load_pretrained_model(
    path: str,
    model: torch.nn.Module,
    ignore_init_mismatch: bool = True,
    map_location: str = "cpu",
    oss_bucket: Any = None,
    scope_map: Any = (),
    excludes: Any = None,
    mmap: bool = True,
    initialised: bool = True,
    **_kwargs: Any,
) -> None:
    """Drop-in for FunASR's ``load_pretrained_model`` that neither copies nor holds two states.

    Same key rules as the original: ``scope_map`` prefix pairs plus the
    ``module.`` prefix, ``excludes`` prefixes, shape mismatches skipped when
    ``ignore_init_mismatch``, missing keys keep their initial values, and the
    model's ``on_pretrained_model_loaded`` hook is called. ``mmap=False`` reads
    the tensors into ordinary memory instead (still without copies): right for
    weights that are replaced soon after, e.g. by int8 quantization, whose
    file pages would otherwise stay resident. ``initialised=False``: the model
    was built under :func:`skip_random_init`, so a weight the checkpoint does
    not provide is zero-filled instead of kept (it holds no values yet).
    """
    if oss_bucket is not None or map_location != "cpu":
        raise ValueError("lean loading supports local checkpoints on CPU only")
    src = _unwrap(_load_checkpoint(path, mmap))
    if isinstance(scope_map, str):
        scope_map = scope_map.split(",")
    scope_map = list(scope_map or []) + ["module.", "None"]
    if isinstance(excludes, str):
        excludes = excludes.split(",")

    dst = model.state_dict(keep_vars=True)
    merged: dict[str, torch.Tensor] = {}
    loaded: set[str] = set()
    for key, current in dst.items():
        if excludes and any(key.startswith(prefix) for prefix in excludes):
            merged[key] = current
            continue
        src_key = key
        for i in range(0, len(scope_map) - 1, 2):
            src_prefix = "" if scope_map[i].lower() == "none" else scope_map[i]
            dst_prefix = "" if scope_map[i + 1].lower() == "none" else scope_map[i + 1]
            if dst_prefix == "" and src_prefix + key in src:
                src_key = src_prefix + key
            elif key.startswith(dst_prefix) and key.replace(dst_prefix, src_prefix, 1) in src:
                src_key = key.replace(dst_prefix, src_prefix, 1)
        tensor = src.get(src_key)
        if tensor is None or tensor.shape != current.shape:
            if tensor is None:
                why = "has no such tensor"
            elif not ignore_init_mismatch:
                raise ValueError(f"{path}: {key} has shape {tuple(tensor.shape)}, "
                                 f"model expects {tuple(current.shape)}")
            else:
                why = f"has shape {tuple(tensor.shape)}, model {tuple(current.shape)}"
            if initialised:
                log.warning("checkpoint %s %s for %s; keeping its initial value", path, why, key)
            else:
                log.warning("checkpoint %s %s for %s; zero-filled (random init skipped)", path, why, key)
                with torch.no_grad():
                    current.zero_()
            merged[key] = current
        else:
            if tensor.dtype != current.dtype:
                tensor = tensor.to(current.dtype)
            merged[key] = tensor
            loaded.add(key)
    # assign=True makes the (memory-mapped) checkpoint tensors the parameters: no copy.
    model.load_state_dict(merged, strict=True, assign=True)
    del merged, src, dst
    hook = getattr(model, "on_pretrained_model_loaded", None)
    if callable(hook):
        hook(frozenset(loaded))
    log.debug("loaded %d tensors from %s (mmap)", len(loaded), Path(path).name)


@contextlib.contextmanager
def lean_checkpoint_loading(mmap: bool = True, skip_init: bool = True) -> Iterator[None]:
    """Use :func:`lean_load_pretrained_model` for ``AutoModel`` builds inside the block.

    ``AutoModel.build_model`` calls the loader through the name imported into
    ``funasr.auto.auto_model``; only that reference is swapped, and only for
    the duration of the block (the lock keeps two loads from interleaving).
    ``skip_init``: build under :func:`skip_random_init` (only models whose
    weights come from a checkpoint may be built inside the block then).
    """
    import funasr.auto.auto_model as auto_model

    with _swap_lock:
        original = auto_model.load_pretrained_model
        auto_model.load_pretrained_model = functools.partial(lean_load_pretrained_model, mmap=mmap,
                                                             initialised=not skip_init)
        try:
            with skip_random_init() if skip_init else contextlib.nullcontext():
                yield
        finally:
            auto_model.load_pretrained_model = original
