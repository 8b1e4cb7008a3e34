"""Silero VAD on torch (TorchScript): the reference the ONNX runtime is checked against.

The VAD worker serves Silero through onnxruntime (:mod:`services.vad.engine`)
and never imports torch for it. This module keeps the previous runtime, the
TorchScript model loaded local-first through torch.hub, so tests and
benchmarks can compare both on the same audio::

    model = load_silero_torch(project_root)
    stream = SileroStream(model, VadOptions())      # same stream and segmenter as ONNX

Only its stateless inner network is used (``model._model(x_with_context,
state)``, exactly what the TorchScript ``forward`` does after reading
``self._state``), so streams sharing the model keep their own state.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

__all__ = ["TorchSileroModel", "load_silero_torch"]

log = logging.getLogger(__name__)


class TorchSileroModel:
    """The shared, read-only Silero network (TorchScript); implements ``engine.SileroModel``."""

    def __init__(self, jit_model: torch.jit.ScriptModule, source: str):
        self.net = jit_model._model  # stateless: forward(x_with_context, state) -> (prob, state)
        self.context_samples = int(self.net.context_size_samples)
        self.source = source

    def initial_state(self) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.zeros(2, 1, 128), torch.zeros(1, self.context_samples)

    @torch.inference_mode()
    def step(self, window: np.ndarray, state: torch.Tensor, context: torch.Tensor):
        x = torch.cat([context, torch.from_numpy(window).unsqueeze(0)], dim=1)
        prob, state = self.net(x, state)
        return float(prob.item()), state, x[:, -self.context_samples:]


def load_silero_torch(project_root: Path) -> TorchSileroModel:
    """Local-first: ``<root>/silero-vad`` via torch.hub (source="local"), else the pip package's model.

    Neither path touches the network.
    """
    local = project_root / "silero-vad"
    if (local / "hubconf.py").is_file():
        loaded = torch.hub.load(str(local), "silero_vad", source="local", trust_repo=True, verbose=False)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        source = f"torch.hub local repo {local}"
    else:
        from silero_vad import load_silero_vad

        model = load_silero_vad()
        source = "silero-vad pip package (bundled TorchScript model; silero-vad/ not found at project root)"
    model.eval()
    log.info("Silero VAD (torch) loaded from %s", source)
    return TorchSileroModel(model, source)
