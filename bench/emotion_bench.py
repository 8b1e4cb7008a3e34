"""Emotion model: memory, real-time factor and batching, naive loader vs the worker's.

Each measurement runs in a fresh child process (so imports, allocator state
and peaks never leak between variants), alternating naive / worker for
``--rounds`` rounds on the same model:

* ``naive``: ``foreign_class`` as the release's README shows it (plus the two
  overrides needed offline: the local ``wav2vec2-base`` and ``pretrained_path``),
  then ``classify_batch`` on the whole segment.
* ``worker``: ``services.emotion.engine.load_speechbrain_model`` (memory-mapped
  encoder checkpoint, malloc_trim) + ``EmotionEngine`` (10 s windows, batches
  of equal-length windows), exactly what the worker runs.

Memory comes from ``/proc/self/status`` (VmRSS = RssAnon + RssFile + RssShmem;
VmHWM = peak RSS, reset between phases through ``/proc/self/clear_refs``).
"load peak" is the peak while loading; "resident" is measured after the
warm-up call that the worker makes before reporting SERVING (right after
loading, the worker's memory-mapped weights are not paged in yet, so
``rss_after_load`` flatters it). RTF = processing seconds per audio second,
wall clock and process CPU time (the latter counts both threads, and is the
figure to trust when other jobs compete for the cores).

Usage (builds the full-size random-weight fixture, ~720 MB, if absent)::

    .venv/bin/python bench/emotion_bench.py                       # full fixture, 2 threads, 2 rounds
    .venv/bin/python bench/emotion_bench.py --model-dir pretrained_models/emotion-recognition-wav2vec2-IEMOCAP

Results are printed and written to ``bench/results/emotion_bench.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL_DIR = ROOT / ".cache" / "full-models" / "emotion-recognition-wav2vec2-IEMOCAP"
SAMPLE_RATE_HZ = 16_000


# ---------------------------------------------------------------------------------- child side

def memory() -> dict[str, int]:
    """Current RSS breakdown and peak, in MiB."""
    status = Path("/proc/self/status").read_text()
    fields = ("VmRSS", "VmHWM", "RssAnon", "RssFile")
    return {name: int(re.search(rf"^{name}:\s+(\d+) kB", status, re.M).group(1)) // 1024 for name in fields}


def reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS


def audio(seconds: float, seed: int):
    import numpy as np

    rng = np.random.default_rng(seed)
    return (rng.standard_normal(int(seconds * SAMPLE_RATE_HZ)) * 0.1).astype(np.float32)


def timed(fn, repeat: int) -> list[tuple[float, float]]:
    """(wall seconds, process CPU seconds) per run. CPU time is the figure that
    survives other jobs competing for the cores; wall time is what a caller sees."""
    times = []
    for _ in range(repeat):
        started, cpu_started = time.perf_counter(), time.process_time()
        fn()
        times.append((time.perf_counter() - started, time.process_time() - cpu_started))
    return times


def per_audio_s(times: list[tuple[float, float]], audio_s: float) -> dict[str, list[float]]:
    return {"wall": [round(wall / audio_s, 3) for wall, _ in times],
            "cpu": [round(cpu / audio_s, 3) for _, cpu in times]}


def child(variant: str, model_dir: Path, threads: int, repeat: int) -> dict:
    os.environ["HF_HUB_OFFLINE"] = "1"  # as the worker: never ask the hub
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    sys.path.insert(0, str(ROOT))
    import torch

    torch.set_num_threads(threads)
    # The imports both variants need, so "imports" is the same baseline for both.
    import speechbrain.inference.interfaces  # noqa: F401
    import transformers.models.wav2vec2.modeling_wav2vec2  # noqa: F401

    out: dict = {"variant": variant, "threads": threads, "imports": memory()}
    reset_peak()
    started = time.monotonic()
    if variant == "naive":
        from speechbrain.inference.interfaces import foreign_class

        savedir = tempfile.mkdtemp(prefix="emotion-naive-")
        classifier = foreign_class(
            source=str(model_dir), pymodule_file="custom_interface.py",
            classname="CustomEncoderWav2vec2Classifier", savedir=savedir,
            overrides={"wav2vec2_hub": str(model_dir / "wav2vec2-base"), "pretrained_path": str(model_dir)})

        def classify_one(samples):
            with torch.inference_mode():
                return classifier.classify_batch(torch.from_numpy(samples)[None])[0]

        def classify_many(segments):
            return [classify_one(s) for s in segments]

        batched = None
    else:
        from services.emotion.engine import EmotionEngine, EmotionOptions, load_speechbrain_model

        engine = EmotionEngine(load_speechbrain_model(model_dir), EmotionOptions())
        classify_one = engine.classify

        def classify_many(segments):
            return [engine.classify(s) for s in segments]

        batched = engine.classify_batch
    out["load_s"] = round(time.monotonic() - started, 2)
    out["after_load"] = memory()

    reset_peak()
    classify_one(audio(1.0, 0))  # the worker's warm-up
    out["after_warmup"] = memory()

    clip10 = audio(10.0, 1)
    reset_peak()
    out["rtf_10s"] = per_audio_s(timed(lambda: classify_one(clip10), repeat), 10.0)
    out["after_10s"] = memory()

    clip60 = audio(60.0, 2)
    reset_peak()
    out["rtf_60s"] = per_audio_s(timed(lambda: classify_one(clip60), max(1, repeat - 1)), 60.0)
    out["after_60s"] = memory()

    # Throughput on 8 segments of 2.5 s (equal length, e.g. fixed-size chunks),
    # one at a time vs one classify_batch, alternating so both see the same load.
    segments = [audio(2.5, 10 + i) for i in range(8)]
    total_s = 2.5 * len(segments)
    single, together = [], []
    for _ in range(repeat):
        single += timed(lambda: classify_many(segments), 1)
        if batched is not None:
            together += timed(lambda: batched(segments), 1)
    out["one_at_a_time_rtf"] = per_audio_s(single, total_s)
    if batched is not None:
        out["batched_rtf"] = per_audio_s(together, total_s)
    out["final"] = memory()
    return out


# --------------------------------------------------------------------------------- parent side

def ensure_model(model_dir: Path) -> None:
    if (model_dir / "wav2vec2.ckpt").is_file():
        return
    print(f"building the full-size random-weight fixture in {model_dir} (~720 MB) ...", flush=True)
    sys.path.insert(0, str(ROOT))
    from scripts.fixtures.speechbrain_emotion import build_emotion_model

    build_emotion_model(model_dir, "full")


def run_child(variant: str, args) -> dict:
    command = [sys.executable, __file__, "--child", variant, "--model-dir", str(args.model_dir),
               "--threads", str(args.threads), "--repeat", str(args.repeat)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{variant} child failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def summarise(runs: list[dict]) -> dict:
    def med(values):
        return round(statistics.median(values), 3)

    def worst(key, field):
        return max(run[key][field] for run in runs)

    def pooled(key, kind):
        return [v for run in runs for v in run[key][kind]]

    summary = {
        "imports_rss_mb": worst("imports", "VmRSS"),
        "load_s": med([run["load_s"] for run in runs]),
        "load_peak_mb": worst("after_load", "VmHWM"),
        "rss_after_load_mb": worst("after_load", "VmRSS"),
        "rss_after_warmup_mb": worst("after_warmup", "VmRSS"),
        "anon_after_warmup_mb": worst("after_warmup", "RssAnon"),
        "file_after_warmup_mb": worst("after_warmup", "RssFile"),
        "peak_10s_mb": worst("after_10s", "VmHWM"),
        "peak_60s_mb": worst("after_60s", "VmHWM"),
        "rss_final_mb": worst("final", "VmRSS"),
    }
    for key in ("rtf_10s", "rtf_60s", "one_at_a_time_rtf", "batched_rtf"):
        if key in runs[0]:
            summary[f"{key}_wall_best"] = min(pooled(key, "wall"))
            summary[f"{key}_wall_median"] = med(pooled(key, "wall"))
            summary[f"{key}_cpu_median"] = med(pooled(key, "cpu"))
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3, help="timed repetitions per measurement")
    parser.add_argument("--rounds", type=int, default=2, help="naive/worker child pairs, alternating")
    parser.add_argument("--child", choices=("naive", "worker"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.model_dir = args.model_dir.absolute()

    if args.child:
        print(json.dumps(child(args.child, args.model_dir, args.threads, args.repeat)))
        return 0

    ensure_model(args.model_dir)
    runs: dict[str, list[dict]] = {"naive": [], "worker": []}
    for round_ in range(args.rounds):
        for variant in ("naive", "worker"):
            print(f"round {round_ + 1}/{args.rounds}: {variant} ...", flush=True)
            runs[variant].append(run_child(variant, args))
    summary = {variant: summarise(results) for variant, results in runs.items()}

    print(f"\nmodel: {args.model_dir}  threads: {args.threads}  rounds: {args.rounds}  "
          f"(MiB; peaks are the worst round, times the median)")
    keys = list(summary["naive"]) + [k for k in summary["worker"] if k not in summary["naive"]]
    print(f"{'':32s}{'naive':>10s}{'worker':>10s}")
    for key in keys:
        print(f"{key:32s}{summary['naive'].get(key, '-')!s:>10s}{summary['worker'].get(key, '-')!s:>10s}")
    results_dir = ROOT / "bench" / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "emotion_bench.json").write_text(json.dumps({"summary": summary, "runs": runs}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
