"""Guards around FunASR's FSMN-VAD model (used by the VAD worker and by the ASR worker's splitter)."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["guard_fsmn_scores", "set_max_segment_ms"]


class _ClampedScores(torch.nn.Module):
    """FSMN-VAD encoder whose per-frame posteriors stay inside (0, 1).

    FunASR's FSMN-VAD takes ``math.log`` of the silence posterior and of one
    minus it; a posterior that saturates to exactly 1.0 in float32 raises
    "math domain error" (FunASR issue #2060, still so in 1.4.16). Clamping by
    1e-6 changes no decision. Remove when FunASR guards the logarithm itself.
    """

    _EPS = 1e-6

    def __init__(self, encoder: torch.nn.Module):
        super().__init__()
        self.inner = encoder

    def forward(self, feats: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        return self.inner(feats, cache=cache).clamp(self._EPS, 1.0 - self._EPS)


def guard_fsmn_scores(vad_model: Any) -> None:
    """Wrap a loaded FSMN-VAD ``AutoModel``'s encoder in :class:`_ClampedScores` (idempotent)."""
    if not isinstance(vad_model.model.encoder, _ClampedScores):
        vad_model.model.encoder = _ClampedScores(vad_model.model.encoder)


def set_max_segment_ms(vad_model: Any, max_segment_ms: float) -> None:
    """Make FSMN cut segments at ``max_segment_ms`` at most.

    FSMN cuts once a segment is *longer* than ``max_single_segment_time``, i.e.
    one frame later, so the limit given to it is one frame shorter.
    """
    opts = vad_model.model.vad_opts
    opts.max_single_segment_time = max(int(max_segment_ms) - int(opts.frame_in_ms), int(opts.frame_in_ms))
