"""Whole-stack benchmark: memory, latency, throughput and scaling, against the naive monolith.

Starts the real stack (VAD, ASR in paraformer mode, emotion, gateway; four
processes, real gRPC) on full-size random-weight models, streams speech at it
through the public ``Analyze`` API, and measures:

* **memory**: ``VmRSS`` after load (the workers warm up before reporting
  SERVING) and ``VmHWM`` (peak while loading) of each process from
  ``/proc/<pid>/status``; the same again at the end of the run; and Pss (shared
  pages split between the processes, so the sum does not count shared
  libraries four times).
* **latency**: client-side arrival time of each ``segment_result`` minus
  arrival time of its ``speech_ended``, single stream paced at real time, by
  utterance length. Test audio: the manifest's speech segments of
  ``../shared/audio`` cut at their exact boundaries and concatenated into
  utterances of the wanted length, separated by 1 s of silence; the benchmark
  checks that the VAD finds exactly one segment per utterance.
* **throughput**: N concurrent real-time streams (starts staggered over one
  utterance period): p95 latency, share of streams refused (RESOURCE_EXHAUSTED
  or any segment error), CPU use of the stack.
* **scaling**: CPU seconds of all stack processes for 10 / 60 / 300 s of
  speech-dense audio (the 10 s block repeated) streamed as fast as the gateway
  takes it (its back-pressure keeps the workers' queues from overflowing; any
  refusal shows as segment errors), and the ratio to 10 s.
* **fp32 vs int8** ASR (``ASR_INT8=1``): ASR memory, latency and compute on a
  reduced workload, run back to back on both.
* the same figures for ``bench/naive_monolith.py`` (one process, AutoModel
  pipeline + foreign_class, re-transcribing the whole buffer every 2 s),
  whose latencies come from a timeline replayed from its measured compute
  times (see that module), and the ratios project / naive.

CPU figures are process CPU seconds (utime + stime from ``/proc/<pid>/stat``),
which hold up when other jobs compete for the cores; latencies are wall clock
and do not. The machine's load average and the CPU time used by everything
else on the host during each phase are recorded next to them.

Usage::

    .venv/bin/python bench/stack_bench.py            # full run (~15-20 min on 2 cores)
    .venv/bin/python bench/stack_bench.py --quick    # sanity run on tiny models (~1 min)
    .venv/bin/python bench/stack_bench.py --readme   # full run, then rewrite bench/README.md's summary
    .venv/bin/python bench/stack_bench.py --small-host   # default vs small-host profile (bench/small_host.py)

Results: ``bench/results/<timestamp>/`` (``results.json``, ``results.md``,
``stack_bench.png``, the test audio and the servers' logs).

This file is the command line; the parts are in ``bench/stackbench/``: ``plan``
(presets, targets), ``workload`` (test audio, streaming client), ``harness`` (the
processes, CPU meter), ``phases`` (what is measured), ``report`` (tables, plot, README).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH_DIR))

import procstat  # noqa: E402
from stackbench.phases import Bench  # noqa: E402
from stackbench.plan import FULL, QUICK  # noqa: E402
from stackbench.report import evaluate_targets, memory_summary, project_to_naive, write_reports  # noqa: E402

FULL_MODELS = ROOT / ".cache" / "full-models"
RESULTS_DIR = BENCH_DIR / "results"


# ---------------------------------------------------------------------------------- models

def full_models_ready(models_dir: Path) -> list[str]:
    """Names of the models missing from a full-size tree (empty when complete)."""
    from services.common.model_paths import required_models, resolve_layout, resolve_model_cache_dir

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "pretrained_models").symlink_to(models_dir, target_is_directory=True)
        layout = resolve_layout(root, resolve_model_cache_dir(root, str(models_dir / "model_cache")))
        names = required_models("paraformer", emotion=True, vad_backend=None)
        return [m.name for m in layout.incomplete(names, include_optional=False)]


def ensure_models(quick: bool, models: Path | None) -> Path:
    if models is not None:
        return models.absolute()
    if quick:
        from scripts.tiny_models import tiny_models_dir

        return Path(tiny_models_dir())
    missing = full_models_ready(FULL_MODELS)
    if missing:
        script = ROOT / "scripts" / "make_test_models.py"
        print(f"full-size fixture models incomplete in {FULL_MODELS} ({', '.join(missing)}); building them "
              f"with {script.relative_to(ROOT)} (several minutes, ~3 GB) ...", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, str(script), "--size", "full", "--out", str(FULL_MODELS)],
                       cwd=ROOT, check=True)
        missing = full_models_ready(FULL_MODELS)
        if missing:
            raise SystemExit(f"still missing after the build: {', '.join(missing)}")
    return FULL_MODELS


# ------------------------------------------------------------------------------------ main

_DEFAULT_COUNTS = dict(zip(FULL.lengths_s, FULL.utterances_per_length))


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="sanity run on tiny models (~1 min)")
    parser.add_argument("--models", type=Path, help="model tree (model_cache/ + emotion model); "
                        "default: .cache/full-models, or the cached tiny tree with --quick")
    parser.add_argument("--out", type=Path, help="results directory (default bench/results/<timestamp>)")
    parser.add_argument("--no-naive", dest="naive", action="store_false", help="skip the naive monolith")
    parser.add_argument("--readme", action="store_true", help="rewrite the summary in bench/README.md")
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    parser.add_argument("--render", type=Path, metavar="RESULTS_DIR",
                        help="only re-render results.md / the plot (and, with --readme, the README) "
                             "from RESULTS_DIR/results.json")
    parser.add_argument("--worker-timeout-s", type=float, help="gateway WORKER_TIMEOUT_S (default: the deployed 30)")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment for every stack process and the naive monolith, "
                             "e.g. OMP_WAIT_POLICY=PASSIVE (repeatable)")
    parser.add_argument("--lengths", type=_floats, help="utterance lengths for the latency test, e.g. 2,5,10,20")
    parser.add_argument("--streams", type=_ints, help="concurrent stream counts, e.g. 1,2,4,8")
    parser.add_argument("--scaling", type=_floats, help="scaling lengths in s (first is the reference), e.g. 10,60,300")
    parser.add_argument("--small-host", action="store_true",
                        help="instead: the default (fp32) stack and the small-host profile in one run, with "
                             "memory, CPU, capacity and int8-drift verdicts (bench/small_host.py)")
    parser.add_argument("--dense-s", type=float, default=60.0, help="--small-host: seconds of speech-dense audio")
    parser.add_argument("--max-streams", type=int, default=10, help="--small-host: largest N in the capacity sweep")
    parser.add_argument("--no-drift", dest="drift", action="store_false", help="--small-host: skip the int8 drift")
    args = parser.parse_args(argv)

    if args.small_host and args.render:
        from small_host import render

        print(render(args.render))
        return 0
    if args.small_host:
        from small_host import run_small_host

        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        out_dir = args.out or RESULTS_DIR / ("small-host-" + dt.datetime.now().strftime("%Y%m%d-%H%M%S"))
        command = " ".join([".venv/bin/python", "bench/stack_bench.py", *(argv if argv is not None else sys.argv[1:])])
        run_small_host(ensure_models(args.quick, args.models), out_dir, args.dense_s, args.max_streams,
                       args.drift, command)
        return 0

    if args.render:
        results = json.loads((args.render / "results.json").read_text())
        write_reports(results, args.render.absolute(), args.readme)
        return 0

    from tqdm import tqdm

    # SIGTERM (e.g. a test's timeout) unwinds like Ctrl-C, so every started server is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    plan = QUICK if args.quick else FULL
    if args.lengths:
        plan = dataclasses.replace(plan, lengths_s=tuple(args.lengths), utterances_per_length=tuple(
            _DEFAULT_COUNTS.get(length, 2) for length in args.lengths))
    if args.streams:
        plan = dataclasses.replace(plan, streams=tuple(args.streams))
    if args.worker_timeout_s:
        plan = dataclasses.replace(plan, worker_timeout_s=args.worker_timeout_s)
    extra_env = dict(item.split("=", 1) for item in args.env)
    if args.scaling:
        plan = dataclasses.replace(plan, scaling_s=tuple(args.scaling), naive_scaling_s=tuple(
            t for t in args.scaling if t <= plan.naive_cap_s))
    started = dt.datetime.now()
    out_dir = args.out or RESULTS_DIR / started.strftime("%Y%m%d-%H%M%S")
    out_dir.mkdir(parents=True, exist_ok=True)
    models_dir = ensure_models(args.quick, args.models)
    steps = 1 + len(plan.lengths_s) + len(plan.streams) + len(plan.scaling_s) + 2 * 2 + int(args.naive)
    progress = tqdm(total=steps, unit="step", disable=not args.progress, file=sys.stderr,
                    bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}]")
    bench = Bench(plan, models_dir, out_dir, progress, args.quick, extra_env)
    results: dict[str, Any] = {"meta": {
        "started": started.isoformat(timespec="seconds"), "quick": args.quick, "models": str(models_dir),
        "plan": dataclasses.asdict(plan), "machine": procstat.machine_info(),
        "loadavg_start": os.getloadavg()[0], "naive_concurrent_with_stack": args.quick and args.naive,
        "worker_timeout_s": plan.worker_timeout_s,
        "extra_env": extra_env, "omp_wait_policy": extra_env.get("OMP_WAIT_POLICY",
                                                                 os.environ.get("OMP_WAIT_POLICY", "(default)")),
        "command": " ".join([".venv/bin/python", "bench/stack_bench.py",
                             *(argv if argv is not None else sys.argv[1:])])}}
    t0 = time.monotonic()
    try:
        # Full run: one after the other, so neither disturbs the other's figures. The quick
        # run (a sanity check that must finish in about a minute) runs them side by side.
        bench.naive_wanted = args.naive
        bench.run_stack()
        if args.naive:
            if bench.naive_proc is None:
                bench.start_naive()
            started_wait = time.monotonic()
            bench.finish_naive()
            bench.results["phase_wall_s"]["naive"] = round(time.monotonic() - started_wait, 1)
    finally:
        bench.stop_naive()
        progress.close()
        shutil.rmtree(bench.work_dir, ignore_errors=True)
    results.update(bench.results)
    results["meta"]["duration_s"] = round(time.monotonic() - t0, 1)
    results["meta"]["loadavg_end"] = os.getloadavg()[0]
    results["memory"] = memory_summary(results.pop("memory_stack"), results.get("naive"))
    results["targets"] = evaluate_targets(results)
    results["ratios_project_to_naive"] = project_to_naive(results)

    (out_dir / "results.json").write_text(json.dumps(results, indent=2))
    write_reports(results, out_dir.absolute(), args.readme and not args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
