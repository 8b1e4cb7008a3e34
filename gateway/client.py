"""Client for the SpeechAnalysisService API: a small library plus the command-line tool.

Library use::

    with grpc.insecure_channel("127.0.0.1:50050") as channel:
        stub = gateway_pb2_grpc.SpeechAnalysisServiceStub(channel)
        for event in analyze(stub, samples, 16000, StreamConfig(...)):
            ...

CLI: ``python -m gateway.client FILE [--address HOST:PORT] [--fast] [--json] [--mic]``.
Files in any format libsndfile reads (WAV, FLAC, OGG, MP3); ``--mic`` records
from the default microphone with the optional ``sounddevice`` package.
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

from speech_analysis.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc

__all__ = ["audio_requests", "analyze", "main"]


def audio_requests(samples: np.ndarray, sample_rate_hz: int, config: gateway_pb2.StreamConfig,
                   chunk_ms: int = 20, realtime: bool = False) -> Iterator[gateway_pb2.AnalyzeRequest]:
    """Config first, then AUDIO_ENCODING_PCM16LE (int16 input) or AUDIO_ENCODING_FLOAT32LE (float input) chunks.

    ``samples`` is frames x channels or 1-D mono.
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
            config: gateway_pb2.StreamConfig | None = None, chunk_ms: int = 20, realtime: bool = False,
            metadata=None, timeout: float | None = None) -> Iterator[gateway_pb2.AnalyzeResponse]:
    requests = audio_requests(samples, sample_rate_hz, config or gateway_pb2.StreamConfig(), chunk_ms, realtime)
    yield from stub.Analyze(requests, metadata=metadata, timeout=timeout)


def _progress(samples: np.ndarray, rate: int, requests: Iterator[gateway_pb2.AnalyzeRequest],
              enabled: bool) -> Iterator[gateway_pb2.AnalyzeRequest]:
    """A progress bar (on stderr) over the audio sent."""
    if not enabled:
        yield from requests
        return
    from tqdm import tqdm

    with tqdm(total=round(len(samples) / rate, 1), unit="s", desc="sent", file=sys.stderr,
              bar_format="{desc} {n:.1f}/{total:.1f} s |{bar}|", leave=False) as bar:
        for request in requests:
            if request.WhichOneof("payload") == "audio":
                frames = len(request.audio) // (2 * (samples.shape[1] if samples.ndim == 2 else 1))
                bar.update(round(frames / rate, 3))
            yield request


def _microphone(rate: int = 16000, chunk_ms: int = 100) -> Iterator[bytes]:
    """PCM16 mono chunks from the default input device until Ctrl-C."""
    try:
        import sounddevice
    except (ImportError, OSError) as exc:
        raise SystemExit(f"--mic needs the sounddevice package and PortAudio ({exc}); "
                         "pip install sounddevice, apt-get install libportaudio2") from None
    try:
        with sounddevice.RawInputStream(samplerate=rate, channels=1, dtype="int16",
                                        blocksize=rate * chunk_ms // 1000) as stream:
            print("recording from the default microphone; Ctrl-C to stop", file=sys.stderr)
            while True:
                data, _overflowed = stream.read(rate * chunk_ms // 1000)
                yield bytes(data)
    except KeyboardInterrupt:
        return
    except sounddevice.PortAudioError as exc:
        raise SystemExit(f"no usable microphone: {exc}") from None


def _describe(event: gateway_pb2.AnalyzeResponse) -> str:
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
        shares = ", ".join(f"{d.display_name or d.label} {d.share:.0%} of speech time "
                           f"(mean probability {d.mean_probability:.0%})" for d in s.emotion_distribution)
        return (f"summary: {s.segment_count} segments, speech {s.speech_duration_ms / 1000:.1f}s of "
                f"{s.audio_duration_ms / 1000:.1f}s; dominant emotion: "
                f"{s.dominant_emotion_display_name or s.dominant_emotion or '-'} [{shares}]\n"
                f"transcript: {s.transcript}")
    return str(event)


def _chain(*iterators):
    for iterator in iterators:
        yield from iterator


def main(argv: list[str] | None = None) -> int:
    import soundfile as sf

    parser = argparse.ArgumentParser(description="Stream an audio file to the speech-emotion gateway.")
    parser.add_argument("file", type=Path, nargs="?", help="audio file (omit with --mic)")
    parser.add_argument("--mic", action="store_true", help="record from the default microphone")
    parser.add_argument("--address", default="127.0.0.1:50050")
    parser.add_argument("--mode", choices=["paraformer", "sensevoice"], default=None)
    parser.add_argument("--fast", action="store_true", help="send as fast as possible, not at real time")
    parser.add_argument("--json", action="store_true", help="one JSON object per event")
    parser.add_argument("--token", help="bearer token")
    parser.add_argument("--tls-ca", type=Path, help="PEM root certificate: use TLS")
    args = parser.parse_args(argv)

    if args.mic == (args.file is not None):
        parser.error("give either FILE or --mic")
    config = gateway_pb2.StreamConfig()
    if args.mode:
        config.mode = common_pb2.ASR_MODE_PARAFORMER if args.mode == "paraformer" else common_pb2.ASR_MODE_SENSEVOICE
    channel = (grpc.secure_channel(args.address, grpc.ssl_channel_credentials(args.tls_ca.read_bytes()))
               if args.tls_ca else grpc.insecure_channel(args.address))
    metadata = [("authorization", f"Bearer {args.token}")] if args.token else None
    try:
        stub = gateway_pb2_grpc.SpeechAnalysisServiceStub(channel)
        if args.mic:
            mic_config = gateway_pb2.StreamConfig()
            mic_config.CopyFrom(config)
            mic_config.sample_rate_hz, mic_config.encoding, mic_config.channels = 16000, common_pb2.AUDIO_ENCODING_PCM16LE, 1
            requests = _chain([gateway_pb2.AnalyzeRequest(config=mic_config)],  # config first, then live audio
                              (gateway_pb2.AnalyzeRequest(audio=chunk) for chunk in _microphone()))
        else:
            try:
                samples, rate = sf.read(args.file, dtype="int16", always_2d=True)
            except (sf.LibsndfileError, RuntimeError) as exc:
                print(f"error: cannot read {args.file}: {exc}", file=sys.stderr)
                return 2
            requests = _progress(samples, rate, audio_requests(samples, rate, config, realtime=not args.fast),
                                 enabled=not args.json and sys.stderr.isatty())
        for event in stub.Analyze(requests, metadata=metadata):
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
