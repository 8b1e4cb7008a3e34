"""Gateway and VAD CPU per client chunk size: what does a 20 ms chunk cost against 100 ms?

Starts the real VAD worker and a gateway in front of it (ASR and emotion addresses
closed: segments then carry errors, which costs nothing here, and the VAD and
gateway do all their work), streams the same audio (every clip of
``../shared/audio`` concatenated, ``--repeat`` times) as fast as they take it with
each ``--chunks-ms`` size, ``--rounds`` times in turn, and prints the CPU seconds
of each process per size. Compare the sizes within one run only.

Usage::

    .venv/bin/python bench/chunk_cost.py                       # 20 and 100 ms, 2 rounds
    .venv/bin/python bench/chunk_cost.py --chunks-ms 20 50 100 250 --rounds 3

Why it exists: the clients' default chunk (speech_analysis_client.audio_requests,
clients/node/client.js) is 100 ms because of what this prints.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH_DIR))

import grpc  # noqa: E402
import numpy as np  # noqa: E402

import procstat  # noqa: E402
from scripts.shared_audio import load_manifest, read_clip  # noqa: E402
from services.common.processes import start_server  # noqa: E402
from speech_analysis.v1 import gateway_pb2_grpc  # noqa: E402
from speech_analysis_client import analyze  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks-ms", type=int, nargs="+", default=[20, 100])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1, help="times the clips are streamed per measurement")
    args = parser.parse_args()

    clips = [read_clip(name, dtype="int16") for name in load_manifest()]
    rates = {rate for _, rate in clips}
    if len(rates) != 1:
        raise SystemExit(f"the shared clips have several sample rates: {sorted(rates)}")
    (rate,) = rates
    audio = np.concatenate([samples for samples, _ in clips] * args.repeat)
    vad = start_server("services.vad.server", "chunk-cost-vad")
    gateway = start_server("gateway.server", "chunk-cost-gateway", serving_service="vad", env={
        "VAD_ADDRESS": vad.address, "ASR_ADDRESS": "127.0.0.1:9", "EMOTION_ADDRESS": "127.0.0.1:9",
        "WORKER_TIMEOUT_S": "2"})
    try:
        print(f"{audio.size / rate:.1f} s of audio per measurement; CPU seconds (VAD + gateway)")
        for round_ in range(1, args.rounds + 1):
            for chunk_ms in args.chunks_ms:
                before = procstat.group_cpu_seconds([vad.proc.pid, gateway.proc.pid])
                with grpc.insecure_channel(gateway.address) as channel:
                    events = list(analyze(gateway_pb2_grpc.SpeechAnalysisServiceStub(channel), audio, rate,
                                          chunk_ms=chunk_ms, timeout=600))
                after = procstat.group_cpu_seconds([vad.proc.pid, gateway.proc.pid])
                vad_s, gateway_s = (after[pid] - before[pid] for pid in (vad.proc.pid, gateway.proc.pid))
                print(f"round {round_}  {chunk_ms:4d} ms chunks: VAD {vad_s:5.2f} s + gateway {gateway_s:5.2f} s"
                      f" = {vad_s + gateway_s:5.2f} s  ({events[-1].summary.segment_count} segments)")
    finally:
        gateway.stop()
        vad.stop()


if __name__ == "__main__":
    main()
