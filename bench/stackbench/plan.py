"""What a stack benchmark run measures (:class:`Plan`, the ``FULL`` and ``QUICK`` presets) and its targets."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Plan", "FULL", "QUICK", "TARGET_STACK_RSS_MIB", "TARGET_SCALING_RATIO", "TARGET_STREAMS",
           "TARGET_P95_S", "latency_target_s"]

# Targets (2-core CPU, paraformer mode with emotion, full-size models).
TARGET_STACK_RSS_MIB = 4.0e9 / 2**20  # 4.0 GB (decimal), in MiB
TARGET_SCALING_RATIO = 7.0
TARGET_STREAMS = 4
TARGET_P95_S = 3.0


def latency_target_s(length_s: float) -> float:
    """Final-result latency target for a segment of ``length_s``: 0.25 x length + 300 ms."""
    return 0.25 * length_s + 0.3


@dataclass(frozen=True)
class Plan:
    """What one run measures. ``FULL`` and ``QUICK`` are the two presets."""

    lengths_s: tuple[float, ...]
    """Utterance lengths for the single-stream latency test."""
    utterances_per_length: tuple[int, ...]
    streams: tuple[int, ...]
    """Concurrent stream counts for the throughput test."""
    stream_utterances_s: tuple[float, ...]
    """Utterance lengths of each throughput stream (in order, 1 s gaps)."""
    scaling_s: tuple[float, ...]
    """Total audio lengths for the scaling test (first is the reference)."""
    naive_scaling_s: tuple[float, ...]
    """Scaling lengths the naive monolith runs (it refused recordings over ``naive_cap_s``)."""
    int8_utterances_s: tuple[float, ...]
    """One stream with these utterances, on fp32 and int8 ASR."""
    int8_scaling_s: float
    chunk_ms: int = 100
    """Client chunk size at real-time pace."""
    fast_chunk_ms: int = 100
    """Client chunk size when streaming as fast as possible."""
    gap_s: float = 1.0
    lead_s: float = 1.0
    tail_s: float = 1.5
    naive_interval_s: float = 2.0
    naive_cap_s: float = 60.0
    naive_measured_ticks: int | None = 8
    """Re-transcriptions the naive monolith runs per recording (rest interpolated); None: all."""
    worker_timeout_s: float = 30.0
    """Gateway WORKER_TIMEOUT_S (the deployed default)."""


FULL = Plan(
    lengths_s=(2, 5, 10, 20), utterances_per_length=(4, 3, 2, 2),
    streams=(1, 2, 4, 8), stream_utterances_s=(4, 5),
    scaling_s=(10, 60, 300), naive_scaling_s=(10, 60),
    int8_utterances_s=(5, 10), int8_scaling_s=30,
)
QUICK = Plan(
    lengths_s=(2, 5), utterances_per_length=(1, 1),
    streams=(1, 2), stream_utterances_s=(3,),
    scaling_s=(10, 20), naive_scaling_s=(10,),
    int8_utterances_s=(2,), int8_scaling_s=5, lead_s=0.5, tail_s=1.0, naive_measured_ticks=None,
)
