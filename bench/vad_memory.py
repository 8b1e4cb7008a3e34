"""VAD worker memory and CPU, per ``VAD_BACKENDS``: is the torch-free Silero worker small?

Starts the real VAD worker (``python -m services.vad.server``, its own
process, as deployed) once per backend list, and measures:

* ``VmRSS`` right after it reports SERVING (model loaded and warmed up) and
  ``VmHWM`` (peak, loading included);
* the same after serving ``--streams`` concurrent streams of every clip in
  ``../shared/audio`` (sent as fast as the worker takes them, 20 ms chunks);
* CPU seconds of the worker per second of audio, and whether ``torch`` is
  mapped into the process (``/proc/<pid>/maps``).

Usage::

    .venv/bin/python bench/vad_memory.py                          # silero, then silero,fsmn
    .venv/bin/python bench/vad_memory.py --backends silero --streams 8
    .venv/bin/python bench/vad_memory.py --models .cache/full-models   # FSMN from that tree

Target (issue #21): the Silero-only worker <= 120 MiB resident while serving.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH_DIR))

import grpc  # noqa: E402
import numpy as np  # noqa: E402

import procstat  # noqa: E402
from services.common.memory import mapped_files  # noqa: E402
from speech_analysis.v1 import common_pb2  # noqa: E402
from speech_analysis.worker.v1 import audio_pb2, vad_pb2, vad_pb2_grpc  # noqa: E402
from scripts.shared_audio import load_manifest, read_clip  # noqa: E402
from services.common.processes import start_server  # noqa: E402

TARGET_RESIDENT_MIB = 120.0
CHUNK_SAMPLES = 320


def _requests(audio: np.ndarray, backend: int):
    yield vad_pb2.StreamVadRequest(config=common_pb2.VadConfig(backend=backend))
    for start in range(0, audio.size, CHUNK_SAMPLES):
        chunk = audio[start:start + CHUNK_SAMPLES].astype("<f4").tobytes()
        yield vad_pb2.StreamVadRequest(audio=audio_pb2.AudioChunk(samples_f32le=chunk))


def _serve(address: str, clips: list[np.ndarray], streams: int, backend: int) -> int:
    """Run ``streams`` concurrent streams, each over every clip; return the segments seen."""
    found = [0] * streams

    def one(index: int) -> None:
        with grpc.insecure_channel(address) as channel:
            stub = vad_pb2_grpc.VadServiceStub(channel)
            for audio in clips:
                found[index] += sum(1 for e in stub.StreamVad(_requests(audio, backend), timeout=600)
                                    if e.WhichOneof("event") == "speech_ended")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(streams)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(found)


def measure(backends: str, env: dict[str, str], clips: list[np.ndarray], streams: int) -> dict:
    server = start_server("services.vad.server", f"vad-{backends.replace(',', '+')}",
                          env={**env, "VAD_BACKENDS": backends}, timeout_s=600)
    try:
        pid = server.proc.pid
        loaded = procstat.memory_mib(pid)
        maps = "\n".join(mapped_files(pid))
        audio_s = streams * sum(c.size for c in clips) / 16000
        figures = {"backends": backends, "after_load": loaded, "torch_mapped": "libtorch" in maps}
        for name, backend in (("silero", common_pb2.VAD_BACKEND_SILERO), ("fsmn", common_pb2.VAD_BACKEND_FSMN)):
            if name not in backends.split(","):
                continue
            cpu_before, started = procstat.cpu_seconds(pid), time.perf_counter()
            segments = _serve(server.address, clips, streams, backend)
            figures[name] = {"segments": segments, "audio_s": round(audio_s, 1),
                             "wall_s": round(time.perf_counter() - started, 2),
                             "cpu_s_per_audio_s": round((procstat.cpu_seconds(pid) - cpu_before) / audio_s, 4)}
        figures["after_serving"] = procstat.memory_mib(pid)
        return figures
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", action="append",
                        help="a VAD_BACKENDS value to measure (repeatable; default: silero, silero,fsmn)")
    parser.add_argument("--streams", type=int, default=4, help="concurrent streams (default 4)")
    parser.add_argument("--models", type=Path, help="model tree holding model_cache/ (FSMN-VAD); "
                        "default .cache/full-models, else the tiny test models")
    args = parser.parse_args(argv)
    runs = args.backends or ["silero", "silero,fsmn"]
    models = args.models or ROOT / ".cache" / "full-models"
    if not (models / "model_cache").is_dir():
        from scripts.tiny_models import tiny_models_dir

        models = tiny_models_dir()
    env = {"MODEL_CACHE_DIR": str(models / "model_cache")}
    clips = [read_clip(name)[0] for name in sorted(load_manifest())]
    info = procstat.machine_info()
    print(f"machine: {info['nproc']} cores ({info['cpu_model']}), {info['mem_total_gib']} GiB; "
          f"load {info['loadavg'][0]:.1f}; {args.streams} concurrent streams x {len(clips)} clips; "
          f"models {models}")
    print("| VAD_BACKENDS | torch mapped | resident after load | peak after load | resident after serving "
          "| peak after serving | CPU s per audio s (silero / fsmn) | target <= 120 MiB |")
    print("|---|---|---|---|---|---|---|---|")
    for backends in runs:
        f = measure(backends, env, clips, args.streams)
        cpu = " / ".join(f"{f[b]['cpu_s_per_audio_s']:.4f}" if b in f else "-" for b in ("silero", "fsmn"))
        resident = max(f["after_load"]["VmRSS"], f["after_serving"]["VmRSS"])
        verdict = ("met" if resident <= TARGET_RESIDENT_MIB
                   else f"MISSED by {resident - TARGET_RESIDENT_MIB:.0f} MiB")
        print(f"| {backends} | {'yes' if f['torch_mapped'] else 'no'} | {f['after_load']['VmRSS']:.0f} MiB "
              f"| {f['after_load']['VmHWM']:.0f} MiB | {f['after_serving']['VmRSS']:.0f} MiB "
              f"| {f['after_serving']['VmHWM']:.0f} MiB | {cpu} "
              f"| {verdict if backends == 'silero' else '(not targeted)'} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
