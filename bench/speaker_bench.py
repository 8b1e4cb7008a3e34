"""Speaker worker (CAM++): memory and compute per second of speech, on the full-size fixture, per runtime.

Starts the real worker process (``services.speaker.server``) on the full-size
random-weight CAM++ fixture (the release's dimensions: 6.85 M parameters, a
28 MB checkpoint; built with ``scripts/make_test_models.py --only speaker``
when absent) once per runtime (``SPEAKER_RUNTIME``: ``torch``, FunASR on torch,
and ``onnx``, the export of ``scripts/export_speaker_onnx.py`` on onnxruntime,
made first when missing or stale) and ``--threads`` value, alternating the
runtimes, and measures over gRPC:

* memory from ``/proc/<pid>/status``: resident (VmRSS, split into anonymous and
  file-backed pages: the torch checkpoint is memory-mapped) once the worker reports
  SERVING, i.e. after loading and its warm-up call; the load peak (VmHWM then);
  and the peak while serving (VmHWM, reset at SERVING) over every request
  below, a burst of concurrent ones included;
* compute per second of speech for segments of several lengths (1, 3, 8 and
  15 s by default; a 15 s segment is embedded from its middle
  SPEAKER_MAX_AUDIO_S = 10 s): the model call's wall time the worker reports
  (``compute_ms``, median over ``--repeats`` calls of different audio) and the
  worker's CPU time (user + system, all threads) over the same calls, both
  divided by the seconds embedded. On a shared host CPU time is the figure to
  trust: wall time also counts waiting for a core;
* with both runtimes, the largest difference between their unit embeddings of
  the same audio (same thread count).

Verdicts against the issue's targets (#17): <= 350 MiB resident, < 10 ms of
compute per second of speech.

Usage::

    .venv/bin/python bench/speaker_bench.py                        # torch and onnx, 1 and 2 threads
    .venv/bin/python bench/speaker_bench.py --runtime onnx --threads 1 --repeats 9
    .venv/bin/python bench/speaker_bench.py --model-cache pretrained_models/model_cache   # the real model

Results are printed and written to ``bench/results/speaker_bench.json``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import procstat  # noqa: E402

DEFAULT_CACHE = ROOT / ".cache" / "full-models" / "model_cache"
MODEL_DIRNAME = "speech_campplus_sv_zh-cn_16k-common"
SAMPLE_RATE_HZ = 16_000
MAX_AUDIO_S = 10.0  # SPEAKER_MAX_AUDIO_S default: longer segments are embedded from their middle
RESIDENT_TARGET_MIB = 350
COMPUTE_TARGET_MS_PER_S = 10.0


def audio(seconds: float, seed: int):
    import numpy as np

    rng = np.random.default_rng(seed)
    return (rng.standard_normal(int(seconds * SAMPLE_RATE_HZ)) * 0.1).astype("<f4")


def ensure_fixture(cache: Path) -> Path:
    model_dir = cache / "models" / "iic" / MODEL_DIRNAME
    if not (model_dir / "campplus_cn_common.bin").is_file():
        sys.path.insert(0, str(ROOT))
        from scripts.fixtures.campplus import build_campplus_model

        print(f"building the full-size CAM++ fixture in {model_dir}", flush=True)
        build_campplus_model(model_dir, "full")
    return model_dir


def ensure_export(model_dir: Path) -> None:
    """The ONNX export SPEAKER_RUNTIME=onnx serves, in ``model_dir/onnx``: made when missing or stale."""
    import subprocess

    sys.path.insert(0, str(ROOT))
    from services.speaker.onnx_runtime import check_export

    try:
        check_export(model_dir / "onnx", model_dir)
    except (FileNotFoundError, ValueError) as exc:
        print(f"exporting CAM++ to ONNX ({exc.__class__.__name__}: scripts/export_speaker_onnx.py)", flush=True)
        subprocess.run([sys.executable, "scripts/export_speaker_onnx.py", "--model-dir", str(model_dir)],
                       cwd=ROOT, check=True, timeout=900)


def measure_worker(cache: Path, runtime: str, threads: int, lengths: list[float], repeats: int) -> dict:
    import grpc
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from speech_analysis.worker.v1 import audio_pb2, speaker_pb2, speaker_pb2_grpc
    from tests.procs import start_server

    project = Path(tempfile.mkdtemp(prefix="speaker-bench-"))
    server = start_server("services.speaker.server", f"speaker-bench-{runtime}-{threads}", timeout_s=300,
                          env={"PROJECT_ROOT": str(project), "MODEL_CACHE_DIR": str(cache),
                               "SPEAKER_RUNTIME": runtime, "TORCH_THREADS": str(threads),
                               "OMP_WAIT_POLICY": "PASSIVE", "SPEAKER_MAX_QUEUE": "64"})
    pid = server.proc.pid
    out: dict = {"runtime": runtime, "threads": threads, "embeddings": {}}
    try:
        out["serving"] = {**procstat.memory_mib(pid), "Pss": procstat.pss_mib(pid)}
        procstat.reset_peak(pid)
        with grpc.insecure_channel(server.address) as channel:
            stub = speaker_pb2_grpc.SpeakerServiceStub(channel)

            def call(samples) -> speaker_pb2.EmbedResponse:
                return stub.Embed(speaker_pb2.EmbedRequest(audio=audio_pb2.AudioChunk(
                    samples_f32le=samples.tobytes())), timeout=300)

            per_length = {}
            for seconds in lengths:
                segments = [audio(seconds, 100 * int(seconds * 10) + i) for i in range(repeats + 1)]
                call(segments[0])  # first call at this length: allocator and kernel set-up
                cpu_before = procstat.cpu_seconds(pid)
                replies = [call(samples) for samples in segments[1:]]
                out["embeddings"][f"{seconds:g}s"] = np.array(replies[0].embedding, dtype=np.float64)
                cpu_s = procstat.cpu_seconds(pid) - cpu_before
                embedded_s = replies[0].audio_ms / 1000
                compute_ms = statistics.median(reply.compute_ms for reply in replies)
                per_length[f"{seconds:g}s"] = {
                    "sent_s": seconds,
                    "embedded_s": embedded_s,
                    "compute_ms (median)": round(compute_ms, 1),
                    "compute_ms_per_s": round(compute_ms / embedded_s, 2),
                    "cpu_ms_per_s": round(cpu_s * 1000 / repeats / embedded_s, 2),
                    "cpu_ms_per_s_sent": round(cpu_s * 1000 / repeats / seconds, 2),
                }
            out["compute"] = per_length
            # A burst: 16 concurrent segments (batches of equal lengths, others one by one).
            burst = [audio(10.0, 900 + i) for i in range(8)] + [audio(3.0, 950 + i) for i in range(8)]
            started = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(len(burst)) as pool:
                list(pool.map(call, burst))
            out["burst_16_wall_s"] = round(time.perf_counter() - started, 2)
        out["after_serving"] = {**procstat.memory_mib(pid), "Pss": procstat.pss_mib(pid)}
    finally:
        out["exit_code"] = server.stop()
    return out


def verdicts(run: dict) -> dict:
    resident = run["serving"]["VmRSS"]
    peak = run["after_serving"]["VmHWM"]
    out = {
        "resident_after_load_mib": resident,
        "resident_verdict": "met" if resident <= RESIDENT_TARGET_MIB else
        f"MISSED by {resident - RESIDENT_TARGET_MIB:.0f} MiB",
        "peak_while_serving_mib": peak,
        "peak_verdict": "met" if peak <= RESIDENT_TARGET_MIB else f"MISSED by {peak - RESIDENT_TARGET_MIB:.0f} MiB",
    }
    for length, figures in run["compute"].items():
        worst = max(figures["compute_ms_per_s"], figures["cpu_ms_per_s"])
        out[f"compute_{length}"] = (f"{figures['compute_ms_per_s']} ms/s wall, {figures['cpu_ms_per_s']} ms/s CPU: "
                                    + ("met" if worst < COMPUTE_TARGET_MS_PER_S else
                                       f"MISSED (x{worst / COMPUTE_TARGET_MS_PER_S:.2f})"))
    return out


def embedding_differences(runs: list[dict]) -> dict[str, float]:
    """Per thread count: the largest difference between the runtimes' unit embeddings of the same audio."""
    out = {}
    for threads in sorted({run["threads"] for run in runs}):
        by_runtime = {run["runtime"]: run["embeddings"] for run in runs if run["threads"] == threads}
        if {"torch", "onnx"} <= set(by_runtime):
            torch_run, onnx_run = by_runtime["torch"], by_runtime["onnx"]
            worst = max(float(abs(torch_run[length] - onnx_run[length]).max()) for length in torch_run)
            out[f"{threads} thread(s)"] = float(f"{worst:.2g}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-cache", type=Path, default=DEFAULT_CACHE,
                        help=f"MODEL_CACHE_DIR holding models/iic/{MODEL_DIRNAME} (default: the full-size "
                        "fixture, built when absent)")
    parser.add_argument("--runtime", choices=("torch", "onnx", "both"), default="both",
                        help="SPEAKER_RUNTIME of the measured worker(s) (default both, alternating)")
    parser.add_argument("--threads", default="1,2", help="TORCH_THREADS values, one worker each (default 1,2)")
    parser.add_argument("--lengths", default="1,3,8,15", help="segment lengths in seconds (default 1,3,8,15)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per length (default 5)")
    args = parser.parse_args(argv)

    cache = args.model_cache.expanduser().resolve()
    model_dir = cache / "models" / "iic" / MODEL_DIRNAME
    if cache == DEFAULT_CACHE.resolve():
        ensure_fixture(cache)
    runtimes = ("torch", "onnx") if args.runtime == "both" else (args.runtime,)
    if "onnx" in runtimes:
        ensure_export(model_dir)
    machine = procstat.machine_info()
    print(f"machine: {machine}", flush=True)
    results: dict = {"machine": machine, "model_cache": str(cache), "runs": []}
    for threads in (int(t) for t in args.threads.split(",")):
        for runtime in runtimes:
            run = measure_worker(cache, runtime, threads, [float(s) for s in args.lengths.split(",")], args.repeats)
            run["verdicts"] = verdicts(run)
            results["runs"].append(run)
            print(f"\nspeaker worker, SPEAKER_RUNTIME={runtime} TORCH_THREADS={threads}")
            print(f"  serving (after load + warm-up): {run['serving']}")
            print(f"  after the calls and a burst of 16 ({run['burst_16_wall_s']} s): {run['after_serving']}")
            for length, figures in run["compute"].items():
                print(f"  {length:>4}: {figures}")
            for key, value in run["verdicts"].items():
                print(f"  {key}: {value}")
    differences = results["embedding_max_abs_diff_torch_vs_onnx"] = embedding_differences(results["runs"])
    if differences:
        print(f"\nunit embeddings, torch vs onnx, largest difference: {differences}")
    for run in results["runs"]:
        del run["embeddings"]
    results["machine_after"] = procstat.machine_info()["loadavg"]
    print(f"load average at the end: {results['machine_after']}")
    out = ROOT / "bench" / "results" / "speaker_bench.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
