"""The benchmark's workload: test audio built from the shared clips, and the client that streams it.

* :class:`SpeechPool` cuts the manifest's speech segments at their exact boundaries;
  :func:`build_workload` concatenates them into utterances of the wanted lengths with
  silence between (:class:`Workload` remembers where each utterance is);
* :func:`run_stream` streams a workload through the public ``Analyze`` API (real-time
  pace or as fast as the gateway takes it) and records the client-side arrival time of
  each event (:class:`StreamRun`); :func:`match_segments` maps the VAD's segments back to
  the utterances, :func:`latency_stats` summarises latencies.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile as sf

from scripts.shared_audio import SHARED_AUDIO

__all__ = ["SAMPLE_RATE_HZ", "SCALING_CYCLE_S", "SpeechPool", "Workload", "repeat_workload", "build_workload",
           "dense_lengths", "StreamRun", "run_stream", "match_segments", "merge_counts", "percentile",
           "latency_stats"]

SAMPLE_RATE_HZ = 16_000

# Utterance lengths of the speech-dense scaling audio, cycled.
SCALING_CYCLE_S = (4, 7, 3, 10, 6)


# ---------------------------------------------------------------------------------- test audio

class SpeechPool:
    """The manifest's speech segments, cut at their exact boundaries, handed out in turn."""

    def __init__(self, audio_dir: Path = SHARED_AUDIO):
        manifest = json.loads((audio_dir / "manifest.json").read_text())
        self.segments: list[np.ndarray] = []
        for entry in manifest.values():
            samples, rate = sf.read(audio_dir / entry["file"], dtype="int16")
            if rate != SAMPLE_RATE_HZ or samples.ndim != 1:
                raise ValueError(f"{entry['file']}: expected 16 kHz mono")
            for segment in entry["segments"]:
                piece = samples[round(segment["start"] * rate): round(segment["end"] * rate)]
                if piece.size >= SAMPLE_RATE_HZ:  # sub-second pieces make choppy utterances
                    self.segments.append(piece)
        self.cursor = 0

    def utterance(self, seconds: float) -> np.ndarray:
        """``seconds`` of continuous speech: whole segments back to back, the last one cut."""
        wanted = int(round(seconds * SAMPLE_RATE_HZ))
        pieces, have = [], 0
        while have < wanted:
            piece = self.segments[self.cursor % len(self.segments)]
            self.cursor += 1
            pieces.append(piece)
            have += piece.size
        out = np.concatenate(pieces)[:wanted].copy()
        fade = min(160, out.size)  # 10 ms fade-out: no click where a segment was cut
        out[-fade:] = (out[-fade:] * np.linspace(1, 0, fade)).astype(np.int16)
        return out


@dataclass
class Workload:
    name: str
    samples: np.ndarray = field(repr=False)
    """int16 mono 16 kHz."""
    utterances: list[tuple[float, float]]
    """(start_s, end_s) of each utterance."""

    @property
    def audio_s(self) -> float:
        return self.samples.size / SAMPLE_RATE_HZ

    @property
    def speech_s(self) -> float:
        return sum(end - start for start, end in self.utterances)


def repeat_workload(name: str, block: Workload, times: int) -> Workload:
    """``block`` back to back ``times`` times: the same speech density and utterance mix."""
    period = block.audio_s
    utterances = [(round(start + k * period, 3), round(end + k * period, 3))
                  for k in range(times) for start, end in block.utterances]
    return Workload(name, np.tile(block.samples, times), utterances)


def build_workload(name: str, pool: SpeechPool, lengths_s: Sequence[float], gap_s: float,
                   lead_s: float, tail_s: float) -> Workload:
    parts = [np.zeros(int(lead_s * SAMPLE_RATE_HZ), np.int16)]
    utterances, t = [], lead_s
    for index, length in enumerate(lengths_s):
        parts.append(pool.utterance(length))
        utterances.append((round(t, 3), round(t + length, 3)))
        t += length
        pause = tail_s if index == len(lengths_s) - 1 else gap_s
        parts.append(np.zeros(int(pause * SAMPLE_RATE_HZ), np.int16))
        t += pause
    return Workload(name, np.concatenate(parts), utterances)


def dense_lengths(total_s: float, gap_s: float, lead_s: float, tail_s: float) -> list[float]:
    """Utterance lengths (cycling SCALING_CYCLE_S) that fill ``total_s`` of audio."""
    lengths, t, i = [], lead_s, 0
    while True:
        length = SCALING_CYCLE_S[i % len(SCALING_CYCLE_S)]
        room = total_s - tail_s - t
        if room < 1.0:
            break
        lengths.append(min(length, room))
        t += lengths[-1] + gap_s
        i += 1
    return lengths


# ---------------------------------------------------------------------------------- the client

@dataclass
class StreamRun:
    """What one Analyze call saw, with client-side arrival times (time.monotonic())."""

    ended: dict[int, tuple[float, int, int]] = field(default_factory=dict)
    """segment id -> (arrival, start_ms, end_ms)"""
    results: dict[int, tuple[float, list[str]]] = field(default_factory=dict)
    """segment id -> (arrival, errors)"""
    error: str | None = None
    """gRPC status code name when the call failed."""
    wall_s: float = 0.0

    def latencies(self) -> dict[int, float]:
        return {sid: self.results[sid][0] - self.ended[sid][0]
                for sid in self.ended if sid in self.results and not self.results[sid][1]}

    def segment_errors(self) -> int:
        return sum(1 for _, errors in self.results.values() if errors)

    def error_codes(self) -> dict[str, int]:
        """Segments with errors, by the first gRPC status code named in their errors."""
        codes: dict[str, int] = {}
        for _, errors in self.results.values():
            if errors:
                code = next((part for error in errors for part in error.replace(":", " ").split()
                             if part.isupper() and "_" in part), "OTHER")
                codes[code] = codes.get(code, 0) + 1
        return codes


def run_stream(address: str, workload: Workload, realtime: bool, chunk_ms: int,
               timeout_s: float = 1800) -> StreamRun:
    """Stream ``workload`` through Analyze, at real-time pace or as fast as the gateway
    takes it (the gateway's own back-pressure: MAX_VAD_LAG_S, MAX_SEGMENTS_IN_FLIGHT)."""
    import grpc

    from speech_analysis_client import audio_requests
    from speech_analysis.v1 import gateway_pb2, gateway_pb2_grpc

    run = StreamRun()
    requests = audio_requests(workload.samples, SAMPLE_RATE_HZ, gateway_pb2.StreamConfig(),
                              chunk_ms=chunk_ms, realtime=realtime)
    started = time.monotonic()
    options = [("grpc.max_receive_message_length", 64 << 20)]
    with grpc.insecure_channel(address, options=options) as channel:
        stub = gateway_pb2_grpc.SpeechAnalysisServiceStub(channel)
        try:
            for event in stub.Analyze(requests, timeout=timeout_s):
                now = time.monotonic()
                kind = event.WhichOneof("event")
                if kind == "speech_ended":
                    e = event.speech_ended
                    run.ended[e.segment_id] = (now, e.start_ms, e.end_ms)
                elif kind == "segment_result":
                    r = event.segment_result
                    run.results[r.segment_id] = (now, list(r.errors))
        except grpc.RpcError as exc:
            run.error = exc.code().name
    run.wall_s = time.monotonic() - started
    return run


def match_segments(workload: Workload, run: StreamRun) -> dict:
    """Map VAD segments to utterances by overlap; one-to-one is what the test audio intends."""
    segments = {sid: (start / 1000, end / 1000) for sid, (_, start, end) in run.ended.items()}
    per_utterance: list[list[int]] = []
    for u_start, u_end in workload.utterances:
        per_utterance.append([sid for sid, (s, e) in segments.items() if min(e, u_end) - max(s, u_start) > 0.05])
    matched = {sid for sids in per_utterance for sid in sids}
    return {
        "utterances": len(workload.utterances),
        "vad_segments": len(segments),
        "one_to_one": all(len(s) == 1 for s in per_utterance) and len(matched) == len(segments),
        "split_utterances": sum(1 for s in per_utterance if len(s) > 1),
        "missed_utterances": sum(1 for s in per_utterance if not s),
        "extra_segments": len(set(segments) - matched),
        "segment_lengths_s": [round(e - s, 2) for s, e in segments.values()],
    }


def merge_counts(counts) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in counts:
        for key, value in item.items():
            out[key] = out.get(key, 0) + value
    return out


def percentile(values: Sequence[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if len(values) else None


def latency_stats(latencies: Sequence[float]) -> dict:
    return {"n": len(latencies), "p50_s": percentile(latencies, 50), "p95_s": percentile(latencies, 95),
            "mean_s": round(statistics.fmean(latencies), 3) if latencies else None,
            "max_s": round(max(latencies), 3) if latencies else None}
