"""Speaker worker (CAM++): memory and compute per second of speech, on the full-size fixture.

Starts the real worker process (``services.speaker.server``) on the full-size
random-weight CAM++ fixture (the release's dimensions: 6.85 M parameters, a
28 MB checkpoint; built with ``scripts/make_test_models.py --only speaker``
when absent) once per ``--threads`` value, and measures over gRPC:

* memory from ``/proc/<pid>/status``: resident (VmRSS, split into anonymous and
  file-backed pages: the checkpoint is memory-mapped) once the worker reports
  SERVING, i.e. after loading and its warm-up call; the load peak (VmHWM then);
  and the peak while serving (VmHWM, reset at SERVING) over every request
  below, a burst of concurrent ones included;
* compute per second of speech for segments of several lengths (1, 3, 8 and
  15 s by default; a 15 s segment is embedded from its middle
  SPEAKER_MAX_AUDIO_S = 10 s): the model call's wall time the worker reports
  (``compute_ms``, median over ``--repeats`` calls of different audio) and the
  worker's CPU time (user + system, all threads) over the same calls, both
  divided by the seconds embedded. On a shared host CPU time is the figure to
  trust: wall time also counts waiting for a core.

Verdicts against the issue's targets (#17): <= 350 MiB resident, < 10 ms of
compute per second of speech.

``--compare-onnx`` adds what the worker does not do (yet): in a child process with
one thread, the model as the worker loads it against the same module exported to
ONNX (in memory) on onnxruntime, call by call alternately (so both see the same
competition for the cores), CPU time per second of speech and the largest
difference between the two unit embeddings.

Usage::

    .venv/bin/python bench/speaker_bench.py                        # 1 and 2 torch threads
    .venv/bin/python bench/speaker_bench.py --threads 1 --repeats 9
    .venv/bin/python bench/speaker_bench.py --model-cache pretrained_models/model_cache   # the real model
    .venv/bin/python bench/speaker_bench.py --threads 1 --compare-onnx            # + torch vs onnxruntime

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


def measure_worker(cache: Path, threads: int, lengths: list[float], repeats: int) -> dict:
    import grpc

    sys.path.insert(0, str(ROOT))
    from speech_analysis.worker.v1 import audio_pb2, speaker_pb2, speaker_pb2_grpc
    from tests.procs import start_server

    project = Path(tempfile.mkdtemp(prefix="speaker-bench-"))
    server = start_server("services.speaker.server", f"speaker-bench-{threads}", timeout_s=300,
                          env={"PROJECT_ROOT": str(project), "MODEL_CACHE_DIR": str(cache),
                               "TORCH_THREADS": str(threads), "OMP_WAIT_POLICY": "PASSIVE",
                               "SPEAKER_MAX_QUEUE": "64"})
    pid = server.proc.pid
    out: dict = {"threads": threads}
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


def compare_onnx(cache: Path, lengths: list[float], repeats: int) -> dict:
    """torch (the worker's model) vs the same module on onnxruntime, one thread, in a child process."""
    import subprocess

    code = f"""
import io, json, resource, sys
import numpy as np, torch
sys.path.insert(0, {str(ROOT)!r})
torch.set_num_threads(1)
import onnxruntime as ort
from services.speaker.engine import load_campplus_model
model = load_campplus_model({str(cache / "models" / "iic" / MODEL_DIRNAME)!r})
features = lambda seconds, seed: model._extract_feature(
    [torch.from_numpy(np.random.default_rng(seed).standard_normal(int(seconds * 16000)).astype(np.float32) * 0.1)])[0]
buffer = io.BytesIO()
with torch.inference_mode():
    torch.onnx.export(model.module, (features(1.0, 0),), buffer, input_names=["feats"], output_names=["emb"],
                      dynamic_axes={{"feats": {{0: "batch", 1: "frames"}}}}, opset_version=17, dynamo=False)
options = ort.SessionOptions()
options.intra_op_num_threads = options.inter_op_num_threads = 1
session = ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])
def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
def unit(v):
    return v[0] / np.linalg.norm(v[0])
def torch_call(f):
    with torch.inference_mode():
        return model.module(f).numpy()
def onnx_call(f):
    return session.run(None, {{"feats": f.numpy()}})[0]
out = {{}}
for seconds in {lengths!r}:
    f = features(min(seconds, {MAX_AUDIO_S}), 1)
    totals = {{"torch": 0.0, "onnxruntime": 0.0}}
    diff = float(np.abs(unit(torch_call(f)) - unit(onnx_call(f))).max())
    for _ in range({repeats}):
        for name, call in (("torch", torch_call), ("onnxruntime", onnx_call)):
            started = cpu(); call(f); totals[name] += cpu() - started
    embedded_s = min(seconds, {MAX_AUDIO_S})
    out[f"{{seconds:g}}s"] = {{**{{f"{{k}}_cpu_ms_per_s": round(v * 1000 / {repeats} / embedded_s, 2)
                                for k, v in totals.items()}}, "max_abs_diff": diff}}
print(json.dumps(out))
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-cache", type=Path, default=DEFAULT_CACHE,
                        help=f"MODEL_CACHE_DIR holding models/iic/{MODEL_DIRNAME} (default: the full-size "
                        "fixture, built when absent)")
    parser.add_argument("--threads", default="1,2", help="TORCH_THREADS values, one worker each (default 1,2)")
    parser.add_argument("--lengths", default="1,3,8,15", help="segment lengths in seconds (default 1,3,8,15)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per length (default 5)")
    parser.add_argument("--compare-onnx", action="store_true",
                        help="also: torch vs onnxruntime on the same module, one thread (CPU time, embedding diff)")
    args = parser.parse_args(argv)

    cache = args.model_cache.expanduser().resolve()
    if cache == DEFAULT_CACHE.resolve():
        ensure_fixture(cache)
    machine = procstat.machine_info()
    print(f"machine: {machine}", flush=True)
    results: dict = {"machine": machine, "model_cache": str(cache), "runs": []}
    for threads in (int(t) for t in args.threads.split(",")):
        run = measure_worker(cache, threads, [float(s) for s in args.lengths.split(",")], args.repeats)
        run["verdicts"] = verdicts(run)
        results["runs"].append(run)
        print(f"\nspeaker worker, TORCH_THREADS={threads}")
        print(f"  serving (after load + warm-up): {run['serving']}")
        print(f"  after the calls and a burst of 16 ({run['burst_16_wall_s']} s): {run['after_serving']}")
        for length, figures in run["compute"].items():
            print(f"  {length:>4}: {figures}")
        for key, value in run["verdicts"].items():
            print(f"  {key}: {value}")
    if args.compare_onnx:
        results["onnx_comparison"] = compare_onnx(cache, [float(s) for s in args.lengths.split(",")], args.repeats)
        print("\ntorch vs onnxruntime, one thread, CPU ms per second embedded (alternating calls):")
        for length, figures in results["onnx_comparison"].items():
            print(f"  {length:>4}: {figures}")
    results["machine_after"] = procstat.machine_info()["loadavg"]
    out = ROOT / "bench" / "results" / "speaker_bench.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
