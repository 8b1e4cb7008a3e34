"""Command-line client for ``speech_analysis.v1.SpeechAnalysisService``.

``speech-analysis-client FILE|- [--address HOST[:PORT]] [--fast] [--json] [--mic]``
(``python -m speech_analysis_client`` from a checkout); a thin layer over
:mod:`speech_analysis_client`.
Files in any format libsndfile reads (WAV, FLAC, OGG, MP3), ``-`` for standard input;
``--mic`` records from the default microphone with the optional ``sounddevice`` package.
The exit status tells a script what happened (:data:`EXIT_CODES`).
"""

from __future__ import annotations

import argparse
import io
import json
import re
import sys
from pathlib import Path
from typing import Iterator

import grpc
import numpy as np
from google.protobuf import json_format

from speech_analysis.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc
from speech_analysis_client import audio_requests, describe

__all__ = ["DEFAULT_PORT", "EXIT_CODES", "main", "run"]

DEFAULT_PORT = 50050
"""The gateway's port when ``--address`` names only a host."""

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_PARTIAL = 0, 1, 2, 3, 4
EXIT_CODES = {
    EXIT_OK: "every segment analysed, summary received",
    EXIT_FAILED: "the gateway ended the stream with an error status (printed on stderr)",
    EXIT_USAGE: "bad arguments, or the audio could not be read",
    EXIT_UNREACHABLE: "no connection to the gateway within --connect-timeout",
    EXIT_PARTIAL: "the stream completed, but some segments or parts failed (error events)",
}


class _Progress:
    """A progress bar (on stderr) over the audio sent, cleared around every printed line.

    Lines go through :meth:`print`: with a bar on screen, ``tqdm.write`` erases the bar,
    prints the line and redraws it, so no bar fragment is left before a line in a terminal.
    Without ``samples`` (live audio, JSON output, no terminal) there is no bar.
    """

    def __init__(self, samples: np.ndarray | None = None, rate: int = 0):
        self.bar = None
        if samples is not None:
            self.frame_bytes = 2 * (samples.shape[1] if samples.ndim == 2 else 1)
            self.rate = rate
            from tqdm import tqdm

            self.bar = tqdm(total=round(len(samples) / rate, 1), unit="s", desc="sent", file=sys.stderr,
                            bar_format="{desc} {n:.1f}/{total:.1f} s |{bar}|", leave=False)

    def over(self, requests: Iterator[gateway_pb2.AnalyzeRequest]) -> Iterator[gateway_pb2.AnalyzeRequest]:
        for request in requests:
            if self.bar is not None and request.WhichOneof("payload") == "audio":
                self.bar.update(round(len(request.audio) // self.frame_bytes / self.rate, 3))
            yield request

    def print(self, line: str) -> None:
        if self.bar is None:
            print(line, flush=True)
        else:
            self.bar.write(line, file=sys.stdout)
            sys.stdout.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _sounddevice():
    """The optional ``sounddevice`` module, or None (with the reason printed)."""
    try:
        import sounddevice
    except (ImportError, OSError) as exc:
        print(f"error: --mic needs the sounddevice package and PortAudio ({exc}): "
              "pip install 'speech-analysis-client[mic]' (or pip install sounddevice) and "
              "apt-get install libportaudio2", file=sys.stderr)
        return None
    return sounddevice


def _microphone(sounddevice, rate: int = 16000, chunk_ms: int = 100) -> Iterator[bytes]:
    """PCM16 mono chunks from the default input device until Ctrl-C."""
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
        # Raised in gRPC's request thread: the call then ends CANCELLED and main reports it.
        print(f"error: no usable microphone: {exc}", file=sys.stderr)


def _chain(*iterators):
    for iterator in iterators:
        yield from iterator


def with_default_port(address: str) -> str:
    """``address`` with the gateway's port added when it names only a host.

    ``host``, ``1.2.3.4`` and ``[::1]`` get :data:`DEFAULT_PORT` (gRPC would otherwise use 443);
    ``host:port``, ``[::1]:port`` and target URIs (``dns:///host:port``, ``unix:path``) are kept.
    """
    if "://" in address or address.startswith(("unix:", "unix-abstract:")):
        return address
    if re.search(r"(^\[.*\]|^[^:\[]*):\d+$", address):  # host:port, [v6]:port
        return address
    if address.count(":") >= 2 and not address.startswith("["):
        return f"[{address}]:{DEFAULT_PORT}"  # a bare IPv6 address
    return f"{address}:{DEFAULT_PORT}"


def _read_audio(path: str) -> tuple[np.ndarray, int]:
    """Samples (frames x channels, int16) and rate of a file or of standard input (``-``)."""
    import soundfile as sf

    if path == "-":
        return sf.read(io.BytesIO(sys.stdin.buffer.read()), dtype="int16", always_2d=True)
    if not Path(path).is_file():
        raise ValueError("no such file")
    return sf.read(path, dtype="int16", always_2d=True)


def _parser() -> argparse.ArgumentParser:
    codes = "\n".join(f"  {code}  {meaning}" for code, meaning in EXIT_CODES.items())
    parser = argparse.ArgumentParser(
        prog="speech-analysis-client", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Stream audio to the speech-emotion gateway and print what it finds.",
        epilog=f"exit status:\n{codes}")
    parser.add_argument("file", nargs="?", help="audio file (WAV, FLAC, OGG, MP3), - for standard input; "
                                                "omit with --mic")
    parser.add_argument("--mic", action="store_true", help="record from the default microphone")
    parser.add_argument("--address", default=f"127.0.0.1:{DEFAULT_PORT}",
                        help=f"gateway HOST[:PORT] (default port {DEFAULT_PORT})")
    parser.add_argument("--connect-timeout", type=float, default=10.0, metavar="S",
                        help="give up when the gateway does not answer within S seconds (default 10)")
    parser.add_argument("--mode", choices=["paraformer", "sensevoice"], default=None)
    parser.add_argument("--fast", action="store_true", help="send as fast as possible, not at real time")
    parser.add_argument("--separate-channels", action="store_true",
                        help="analyse each channel of a stereo file on its own (one speaker per channel) "
                             "instead of downmixing; adds per-channel and conversation figures")
    parser.add_argument("--speakers", type=int, nargs="?", const=0, default=None, metavar="MAX",
                        help="label each segment with its speaker (needs a gateway with a speaker worker); "
                             "MAX: most speakers to tell apart (default 8)")
    parser.add_argument("--json", action="store_true", help="one JSON object per event, every field")
    parser.add_argument("--token", help="bearer token")
    parser.add_argument("--tls-ca", type=Path, help="PEM root certificate: use TLS")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.mic == (args.file is not None):
        parser.error("give either FILE or --mic")
    config = gateway_pb2.StreamConfig()
    if args.mode:
        config.mode = common_pb2.AsrMode.Value(f"ASR_MODE_{args.mode.upper()}")
    if args.separate_channels:
        config.channel_mode = gateway_pb2.CHANNEL_MODE_SEPARATE
    if args.speakers is not None:
        if not 0 <= args.speakers <= 32:
            parser.error("--speakers MAX must be 1..32")
        config.speaker_labels.enabled, config.speaker_labels.max_speakers = True, args.speakers

    if args.mic:
        if (sounddevice := _sounddevice()) is None:
            return EXIT_USAGE
        config.sample_rate_hz, config.encoding, config.channels = 16000, common_pb2.AUDIO_ENCODING_PCM16LE, 1
        requests = _chain([gateway_pb2.AnalyzeRequest(config=config)],  # config first, then live audio
                          (gateway_pb2.AnalyzeRequest(audio=chunk) for chunk in _microphone(sounddevice)))
        progress = _Progress()
    else:
        try:
            samples, rate = _read_audio(args.file)
        except Exception as exc:  # noqa: BLE001 - libsndfile's errors have no common base
            print(f"error: cannot read {args.file}: {exc}", file=sys.stderr)
            return EXIT_USAGE
        progress = _Progress(samples if not args.json and sys.stderr.isatty() else None, rate)
        requests = progress.over(audio_requests(samples, rate, config, realtime=not args.fast))

    address = with_default_port(args.address)
    channel = (grpc.secure_channel(address, grpc.ssl_channel_credentials(args.tls_ca.read_bytes()))
               if args.tls_ca else grpc.insecure_channel(address))
    metadata = [("authorization", f"Bearer {args.token}")] if args.token else None
    failures = 0
    try:
        try:
            grpc.channel_ready_future(channel).result(timeout=args.connect_timeout)
        except grpc.FutureTimeoutError:
            print(f"error: no answer from {address} within {args.connect_timeout:g} s "
                  "(--connect-timeout)", file=sys.stderr)
            return EXIT_UNREACHABLE
        stub = gateway_pb2_grpc.SpeechAnalysisServiceStub(channel)
        for event in stub.Analyze(requests, metadata=metadata):
            kind = event.WhichOneof("event")
            failures += kind == "error" or (kind == "segment_result" and bool(event.segment_result.errors))
            if args.json:
                progress.print(json.dumps(json_format.MessageToDict(
                    event, always_print_fields_with_no_presence=True), ensure_ascii=False))
            else:
                progress.print(describe(event, channels=args.separate_channels))
    except grpc.RpcError as exc:
        progress.close()
        print(f"error: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        progress.close()
        channel.close()
    if failures:
        print(f"error: {failures} segment(s) or part(s) failed; see the error lines", file=sys.stderr)
        return EXIT_PARTIAL
    return EXIT_OK


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
