"""Python client for ``speech_analysis.v1.SpeechAnalysisService``: a small library.

Stubs: ``speech_analysis.v1.gateway_pb2`` (messages), ``speech_analysis.v1.gateway_pb2_grpc``
(``SpeechAnalysisServiceStub``), ``speech_analysis.v1.common_pb2`` (shared enums and
messages). The command-line tool is :mod:`speech_analysis_client.cli`
(``speech-analysis-client`` once installed, ``python -m speech_analysis_client``).

Library use::

    import grpc
    from speech_analysis.v1 import gateway_pb2, gateway_pb2_grpc
    from speech_analysis_client import analyze, analyze_file, describe

    with grpc.insecure_channel("127.0.0.1:50050") as channel:
        stub = gateway_pb2_grpc.SpeechAnalysisServiceStub(channel)
        for event in analyze(stub, samples, 16000, gateway_pb2.StreamConfig(), realtime=True):
            print(describe(event))
        events = analyze_file(stub, Path("call.mp3").read_bytes())

``samples`` is int16 (sent as AUDIO_ENCODING_PCM16LE) or float (AUDIO_ENCODING_FLOAT32LE),
frames x channels or 1-D mono, at any rate from 8 to 192 kHz; the gateway resamples.
Limits (largest message, file and session, idle timeout) are in the proto's comments.
"""

from __future__ import annotations

import time
from typing import Iterator

import numpy as np

from speech_analysis.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc

__all__ = ["audio_requests", "analyze", "analyze_file", "describe"]


def audio_requests(samples: np.ndarray, sample_rate_hz: int, config: gateway_pb2.StreamConfig,
                   chunk_ms: int = 100, realtime: bool = False) -> Iterator[gateway_pb2.AnalyzeRequest]:
    """``Analyze`` requests: the config first, then ``chunk_ms`` audio chunks.

    100 ms chunks, as the gateway recommends: each chunk is a message to the gateway and
    on to the VAD worker, and 20 ms ones cost those two processes 2.5-3 times the CPU
    for at most 80 ms less latency (bench/chunk_cost.py).

    ``samples`` is frames x channels or 1-D mono; int16 goes as AUDIO_ENCODING_PCM16LE, float as
    AUDIO_ENCODING_FLOAT32LE. ``realtime`` paces the chunks like a live source.
    """
    frames = samples if samples.ndim == 2 else samples[:, None]
    request_config = gateway_pb2.StreamConfig()
    request_config.CopyFrom(config)
    request_config.sample_rate_hz = sample_rate_hz
    request_config.channels = frames.shape[1]
    if samples.dtype == np.int16:
        request_config.encoding = common_pb2.AUDIO_ENCODING_PCM16LE
        data = frames.astype("<i2")
    else:
        request_config.encoding = common_pb2.AUDIO_ENCODING_FLOAT32LE
        data = frames.astype("<f4")
    yield gateway_pb2.AnalyzeRequest(config=request_config)
    step = max(1, sample_rate_hz * chunk_ms // 1000)
    started = time.monotonic()
    for index, start in enumerate(range(0, data.shape[0], step)):
        if realtime:
            delay = started + index * chunk_ms / 1000 - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        yield gateway_pb2.AnalyzeRequest(audio=data[start:start + step].tobytes())


def analyze(stub: gateway_pb2_grpc.SpeechAnalysisServiceStub, samples: np.ndarray, sample_rate_hz: int,
            config: gateway_pb2.StreamConfig | None = None, chunk_ms: int = 100, realtime: bool = False,
            metadata=None, timeout: float | None = None) -> Iterator[gateway_pb2.AnalyzeResponse]:
    """``Analyze``: stream ``samples``, yield each event as it arrives (the summary last)."""
    requests = audio_requests(samples, sample_rate_hz, config or gateway_pb2.StreamConfig(), chunk_ms, realtime)
    yield from stub.Analyze(requests, metadata=metadata, timeout=timeout)


def analyze_file(stub: gateway_pb2_grpc.SpeechAnalysisServiceStub, content: bytes,
                 config: gateway_pb2.StreamConfig | None = None, metadata=None,
                 timeout: float | None = None) -> list[gateway_pb2.AnalyzeResponse]:
    """``AnalyzeFile``: a whole encoded file (WAV, FLAC, OGG, MP3) in, every event out, in order."""
    request = gateway_pb2.AnalyzeFileRequest(content=content, config=config or gateway_pb2.StreamConfig())
    return list(stub.AnalyzeFile(request, metadata=metadata, timeout=timeout).events)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def describe(event: gateway_pb2.AnalyzeResponse, channels: bool = False) -> str:
    """One human-readable line (two or more for the summary) per event.

    ``channels``: prefix each line with the event's channel (CHANNEL_MODE_SEPARATE).
    """
    kind = event.WhichOneof("event")
    line = _describe(event, kind)
    if channels and kind not in ("summary", None):
        return f"ch{getattr(event, kind).channel} {line}"
    return line


def _describe(event: gateway_pb2.AnalyzeResponse, kind: str | None) -> str:
    if kind == "speech_started":
        s = event.speech_started
        return f"[{s.start_ms / 1000:7.2f}s] speech started (segment {s.segment_id})"
    if kind == "speech_ended":
        e = event.speech_ended
        return (f"[{e.end_ms / 1000:7.2f}s] speech ended   "
                f"(segment {e.segment_id}, {e.start_ms / 1000:.2f}-{e.end_ms / 1000:.2f}s)")
    if kind == "segment_result":
        r = event.segment_result
        emotions = ", ".join(f"{e.display_name or e.label} {e.confidence:.0%} ({e.source})" for e in r.emotions)
        who = f" speaker {r.speaker}" if r.speaker else ""
        parts = [f"segment {r.segment_id}{who} {r.start_ms / 1000:.2f}-{r.end_ms / 1000:.2f}s: "
                 f"{r.text or '(no text)'}"]
        if emotions:
            parts.append(f"emotion: {emotions}")
        if r.language:
            parts.append(f"language: {r.language_display_name or r.language}")
        if r.errors:
            parts.append("errors: " + "; ".join(r.errors))
        if r.random_weights:
            parts.append("(random-weight demo models: not a real analysis)")
        return "  " + " | ".join(parts)
    if kind == "interim_result":
        return f"  ... {event.interim_result.text}"
    if kind == "error":
        return f"error: {event.error.code}: {event.error.message}"
    if kind == "summary":
        s = event.summary
        shares = ", ".join(f"{d.display_name or d.label} {d.share:.0%} of speech time "
                           f"(mean probability {d.mean_probability:.0%})" for d in s.emotion_distribution)
        lines = [f"summary: {_count(s.segment_count, 'segment')}, speech {s.speech_duration_ms / 1000:.1f}s of "
                 f"{s.audio_duration_ms / 1000:.1f}s; dominant emotion: "
                 f"{s.dominant_emotion_display_name or s.dominant_emotion or '-'} [{shares}]",
                 f"transcript: {s.transcript}"]
        lines += [_party_line(f"ch{c.channel}", c) for c in s.channels]
        lines += [_party_line(f"speaker {p.speaker}", p) for p in s.speakers]
        if s.HasField("conversation"):
            v = s.conversation
            lines.append(f"conversation: cross-talk {v.overlap_ms / 1000:.1f}s, silence {v.silence_ms / 1000:.1f}s "
                         f"({v.silence_share:.0%}), {_count(v.turn_count, 'turn change')}")
        return "\n".join(lines)
    return str(event)


def _party_line(name: str, party: gateway_pb2.ChannelSummary | gateway_pb2.SpeakerSummary) -> str:
    """The summary line of one channel or speaker."""
    return (f"{name}: {_count(party.segment_count, 'segment')}, talk {party.talk_time_ms / 1000:.1f}s "
            f"({party.talk_time_share:.0%}), dominant emotion "
            f"{party.dominant_emotion_display_name or party.dominant_emotion or '-'}: {party.transcript}")
