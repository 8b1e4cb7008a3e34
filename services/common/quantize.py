"""Dynamic int8 quantization of a loaded model's ``nn.Linear`` layers (ASR_INT8, EMOTION_INT8).

``torch.ao.quantization.quantize_dynamic`` stores each Linear's weight as
int8 with a per-tensor scale and quantizes activations on the fly; on CPU the
matrix products run through fbgemm/qnnpack. Convolutions, embeddings and norms
stay float.

The workers load checkpoints memory-mapped (file-backed pages, no copy).
Quantization reads every float Linear weight, so those file pages would stay
resident for as long as any tensor still maps the file. So afterwards the
remaining float tensors are copied into process memory (they are small), and
the mapping is left without users. A large float tensor (CT-Transformer's
471067 x 516 embedding: 970 MB, of which a decode touches a few rows) is not
copied but taken from ``fresh_state()``, a new mapping of the checkpoint in
which nothing has been read yet.

``torch.ao.quantization`` warns that it is deprecated in favour of torchao;
it still ships, unchanged, in the pinned torch (2.13), and torchao's eager
replacement (``quantize_`` with ``Int8DynamicActivationInt8WeightConfig``)
would add a dependency for the same kernels. Revisit when torch drops it.
"""

from __future__ import annotations

import gc
import logging
import warnings
from typing import Callable

import torch

__all__ = ["quantize_linear_int8"]

log = logging.getLogger(__name__)

REMAP_MIN_BYTES = 64 << 20
"""Float tensors this large are re-mapped from ``fresh_state`` instead of copied."""


def quantize_linear_int8(net: torch.nn.Module,
                         fresh_state: Callable[[], dict[str, torch.Tensor]] | None = None) -> torch.nn.Module:
    """Quantize ``net``'s Linears in place and release its checkpoint mapping; returns ``net``.

    ``fresh_state`` returns the checkpoint's state dict, freshly memory-mapped,
    with ``net``'s parameter names; without it large tensors are copied too.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "torch.ao.quantization is deprecated", DeprecationWarning)
        warnings.filterwarnings("ignore", "torch.quantize_per_tensor", UserWarning)
        net = torch.ao.quantization.quantize_dynamic(net, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
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
