"""Command-line client for ``speech_analysis.v1.SpeechAnalysisService``.

``speech-analysis-client FILE [--address HOST:PORT] [--fast] [--json] [--mic]``
(``python -m speech_analysis_client`` from a checkout); a thin layer over
:mod:`speech_analysis_client`.
Files in any format libsndfile reads (WAV, FLAC, OGG, MP3); ``--mic`` records
from the default microphone with the optional ``sounddevice`` package.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Iterator

import grpc
import numpy as np
from google.protobuf import json_format

from speech_analysis.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc
from speech_analysis_client import audio_requests, describe

__all__ = ["main", "run"]


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
                print(describe(event), flush=True)
    except grpc.RpcError as exc:
        print(f"error: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    finally:
        channel.close()
    return 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
