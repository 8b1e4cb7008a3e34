"""Dynamic int8 quantization of a loaded model's ``nn.Linear`` layers (ASR_INT8, EMOTION_INT8).

``torch.ao.quantization.quantize_dynamic`` stores each Linear's weight as
int8 with a per-tensor scale and quantizes activations on the fly; on CPU the
matrix products run through fbgemm/qnnpack. Convolutions, embeddings and norms
stay float.

The workers load checkpoints memory-mapped (file-backed pages, no copy).
Quantization reads every float Linear weight, so those file pages would stay
resident for as long as any tensor still maps the file. So the Linears are
quantized one at a time, and right after each the pages of its float weight
are handed back (``madvise(MADV_PAGEOUT)``, only for a weight that lies in a
file mapping: clean pages are dropped and re-read from the file should
anything touch them again, and a page that was modified after mapping is
written to swap or kept, never lost, unlike with ``MADV_DONTNEED``): the
load peak is the int8 model plus one float layer, not both models. Afterwards the remaining float tensors are
copied into process memory (they are small), and the mapping is left without
users. A large float tensor (CT-Transformer's
471067 x 516 embedding: 970 MB, of which a decode touches a few rows) is not
copied but taken from ``fresh_state()``, a new mapping of the checkpoint in
which nothing has been read yet.

``torch.ao.quantization`` warns that it is deprecated in favour of torchao;
it still ships, unchanged, in the pinned torch (2.13), and torchao's eager
replacement (``quantize_`` with ``Int8DynamicActivationInt8WeightConfig``)
would add a dependency for the same kernels. Revisit when torch drops it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import logging
import os
import warnings
from typing import Callable

import torch

from services.common.memory import libc_function

__all__ = ["quantize_linear_int8"]

log = logging.getLogger(__name__)

REMAP_MIN_BYTES = 64 << 20
"""Float tensors this large are re-mapped from ``fresh_state`` instead of copied."""


_MADV_PAGEOUT = 21  # Linux >= 5.4; older kernels refuse it (EINVAL) and nothing is handed back
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _file_mapped_ranges() -> list[tuple[int, int]]:
    """Address ranges of this process mapped from files (``/proc/self/maps``)."""
    ranges = []
    with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and fields[5].startswith("/"):
                start, end = (int(x, 16) for x in fields[0].split("-"))
                ranges.append((start, end))
    return ranges


def _drop_file_pages(tensor: torch.Tensor, ranges: list[tuple[int, int]]) -> int:
    """Hand back the whole pages of ``tensor`` if it lies in a file mapping; bytes dropped."""
    madvise = _madvise()
    start = tensor.data_ptr()
    end = start + tensor.nbytes
    if madvise is None or not tensor.is_contiguous() or not any(lo <= start and end <= hi for lo, hi in ranges):
        return 0
    first, last = -(-start // _PAGE) * _PAGE, end // _PAGE * _PAGE
    if last <= first or madvise(ctypes.c_void_p(first), ctypes.c_size_t(last - first), _MADV_PAGEOUT) != 0:
        return 0
    return last - first


@functools.cache
def _madvise():
    madvise = libc_function("madvise")
    if madvise is not None:
        madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        madvise.restype = ctypes.c_int
    return madvise


def _quantize_linears(net: torch.nn.Module) -> int:
    """Swap every ``nn.Linear`` for a dynamic int8 one, one at a time; float bytes handed back."""
    ranges = _file_mapped_ranges()
    swapped: dict[int, torch.nn.Module] = {}  # a Linear shared by two parents is quantized once
    dropped = 0
    targets = [(parent, name, child) for parent in net.modules()
               for name, child in parent.named_children() if type(child) is torch.nn.Linear]
    for parent, name, child in targets:
        if id(child) not in swapped:
            child.qconfig = torch.ao.quantization.default_dynamic_qconfig
            swapped[id(child)] = torch.ao.nn.quantized.dynamic.Linear.from_float(child)
            dropped += _drop_file_pages(child.weight, ranges)
        setattr(parent, name, swapped[id(child)])
    return dropped


def quantize_linear_int8(net: torch.nn.Module,
                         fresh_state: Callable[[], dict[str, torch.Tensor]] | None = None) -> torch.nn.Module:
    """Quantize ``net``'s Linears in place and release its checkpoint mapping; returns ``net``.

    ``fresh_state`` returns the checkpoint's state dict, freshly memory-mapped,
    with ``net``'s parameter names; without it large tensors are copied too.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "torch.ao.quantization is deprecated", DeprecationWarning)
        warnings.filterwarnings("ignore", "torch.quantize_per_tensor", UserWarning)
        dropped = _quantize_linears(net)
    log.debug("int8: %.0f MB of float weight pages handed back while quantizing", dropped / 1e6)
    fresh: dict[str, torch.Tensor] | None = None
    with torch.no_grad():
        for prefix, module in net.named_modules():
            if isinstance(module, torch.ao.nn.quantized.dynamic.Linear):
                weight, bias = module._weight_bias()  # the packed bias still maps the file
                module.set_weight_bias(weight, None if bias is None else bias.clone())
            for name, param in list(module.named_parameters(recurse=False)):
                key = f"{prefix}.{name}" if prefix else name
                value = None
                if fresh_state is not None and param.nbytes >= REMAP_MIN_BYTES:
                    if fresh is None:
                        fresh = fresh_state()
                    value = fresh.get(key)
                    if value is None or value.shape != param.shape or value.dtype != param.dtype:
                        log.warning("%s: no matching tensor in the checkpoint; copying it", key)
                        value = None
                setattr(module, name, torch.nn.Parameter(
                    param.detach().clone() if value is None else value, requires_grad=False))
            for name, buffer in list(module.named_buffers(recurse=False)):
                if buffer is not None:
                    module._buffers[name] = buffer.clone()
    net.eval()
    del fresh  # the tensors taken from it keep their part of the new mapping
    gc.collect()  # the float Linears sit in reference cycles (module -> qconfig -> closure -> module)
    return net
