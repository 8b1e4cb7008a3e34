"""Client for the SpeechAnalysis API: a small library plus the command-line tool.

Library use::

    with grpc.insecure_channel("127.0.0.1:50050") as channel:
        stub = gateway_pb2_grpc.SpeechAnalysisStub(channel)
        for event in analyze(stub, samples, 16000, StreamConfig(...)):
            ...

CLI: ``python -m gateway.client FILE [--address HOST:PORT] [--fast] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Iterator

import grpc
import numpy as np
from google.protobuf import json_format

from protos.v1 import asr_pb2, audio_pb2, gateway_pb2, gateway_pb2_grpc

__all__ = ["audio_requests", "analyze", "main"]


def audio_requests(samples: np.ndarray, sample_rate_hz: int, config: gateway_pb2.StreamConfig,
                   chunk_ms: int = 20, realtime: bool = False) -> Iterator[gateway_pb2.AnalyzeRequest]:
    """Config first, then PCM16LE (int16 input) or FLOAT32LE (float input) chunks.

    ``samples`` is frames x channels or 1-D mono.
    """
    frames = samples if samples.ndim == 2 else samples[:, None]
    request_config = gateway_pb2.StreamConfig()
    request_config.CopyFrom(config)
    request_config.sample_rate_hz = sample_rate_hz
    request_config.channels = frames.shape[1]
    if samples.dtype == np.int16:
        request_config.encoding = audio_pb2.PCM16LE
        data = frames.astype("<i2")
    else:
        request_config.encoding = audio_pb2.FLOAT32LE
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


def analyze(stub: gateway_pb2_grpc.SpeechAnalysisStub, samples: np.ndarray, sample_rate_hz: int,
            config: gateway_pb2.StreamConfig | None = None, chunk_ms: int = 20, realtime: bool = False,
            metadata=None, timeout: float | None = None) -> Iterator[gateway_pb2.AnalyzeEvent]:
    requests = audio_requests(samples, sample_rate_hz, config or gateway_pb2.StreamConfig(), chunk_ms, realtime)
    yield from stub.Analyze(requests, metadata=metadata, timeout=timeout)


def _describe(event: gateway_pb2.AnalyzeEvent) -> str:
    kind = event.WhichOneof("event")
    if kind == "speech_started":
        return f"[{event.speech_started.start_ms / 1000:7.2f}s] speech started (segment {event.speech_started.segment_id})"
    if kind == "speech_ended":
        e = event.speech_ended
        return f"[{e.end_ms / 1000:7.2f}s] speech ended   (segment {e.segment_id}, {e.start_ms / 1000:.2f}-{e.end_ms / 1000:.2f}s)"
    if kind == "segment_result":
        r = event.segment_result
        emotions = ", ".join(f"{e.display_name or e.label} {e.confidence:.0%} ({e.source})" for e in r.emotions)
        parts = [f"segment {r.segment_id} {r.start_ms / 1000:.2f}-{r.end_ms / 1000:.2f}s: {r.text or '(no text)'}"]
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
    if kind == "summary":
        s = event.summary
        shares = ", ".join(f"{d.display_name or d.label} {d.share:.0%}" for d in s.emotion_distribution)
        return (f"summary: {s.segment_count} segments, speech {s.speech_duration_ms / 1000:.1f}s of "
                f"{s.audio_duration_ms / 1000:.1f}s; dominant emotion: "
                f"{s.dominant_emotion_display_name or s.dominant_emotion or '-'} [{shares}]\n"
                f"transcript: {s.transcript}")
    return str(event)


def main(argv: list[str] | None = None) -> int:
    import soundfile as sf

    parser = argparse.ArgumentParser(description="Stream an audio file to the speech-emotion gateway.")
    parser.add_argument("file", type=Path)
    parser.add_argument("--address", default="127.0.0.1:50050")
    parser.add_argument("--mode", choices=["paraformer", "sensevoice"], default=None)
    parser.add_argument("--fast", action="store_true", help="send as fast as possible, not at real time")
    parser.add_argument("--json", action="store_true", help="one JSON object per event")
    parser.add_argument("--token", help="bearer token")
    parser.add_argument("--tls-ca", type=Path, help="PEM root certificate: use TLS")
    args = parser.parse_args(argv)

    samples, rate = sf.read(args.file, dtype="int16", always_2d=True)
    config = gateway_pb2.StreamConfig()
    if args.mode:
        config.mode = asr_pb2.PARAFORMER if args.mode == "paraformer" else asr_pb2.SENSEVOICE
    channel = (grpc.secure_channel(args.address, grpc.ssl_channel_credentials(args.tls_ca.read_bytes()))
               if args.tls_ca else grpc.insecure_channel(args.address))
    metadata = [("authorization", f"Bearer {args.token}")] if args.token else None
    try:
        stub = gateway_pb2_grpc.SpeechAnalysisStub(channel)
        for event in analyze(stub, samples, rate, config, realtime=not args.fast, metadata=metadata):
            if args.json:
                print(json.dumps(json_format.MessageToDict(event), ensure_ascii=False), flush=True)
            else:
                print(_describe(event), flush=True)
    except grpc.RpcError as exc:
        print(f"error: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    finally:
        channel.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
