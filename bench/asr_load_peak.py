"""ASR worker load peak: how much memory loading needs, fp32 and int8, before and after #21.

Each variant loads the ASR engine the way the worker does
(``services.asr.engine.load_engine`` + ``warm_up``) in a fresh process and
reports ``VmRSS`` and ``VmHWM`` (peak resident, loading included) from
``/proc/self/status``, after loading and after the warm-up, plus the load time.

Variants (``ASR_INT8`` off/on, each):

* ``random-init``: the loader before #21: the model is built with random
  weights, then the memory-mapped checkpoint replaces them (the random model
  was the peak);
* ``skip-init`` (what the worker does now): built with ``torch.nn.init``'s
  random fills as no-ops, so the weights' pages are never made resident before
  the checkpoint's replace them; int8 layers are quantized one at a time.

Usage::

    .venv/bin/python bench/asr_load_peak.py                       # paraformer, full-size fixtures
    .venv/bin/python bench/asr_load_peak.py --mode sensevoice --models .cache/full-models
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH_DIR))

import procstat  # noqa: E402

VARIANTS = (("fp32", False, False), ("fp32", False, True), ("int8", True, False), ("int8", True, True))

_CHILD = r"""
import json, sys, time
sys.path.insert(0, {root!r}); sys.path.insert(0, {bench!r})
from pathlib import Path
import services.asr.engine as engine_module
import services.funasr.automodel as automodel_module
from services.funasr.lean_loading import lean_checkpoint_loading
from services.asr.requests import AsrOptions
from services.common.memory import memory_mb
from asr_bench import model_dirs
if not {skip_init}:  # the loader before #21: random init, then the mapped checkpoint
    original = lean_checkpoint_loading
    automodel_module.lean_checkpoint_loading = lambda mmap=True: original(mmap=mmap, skip_init=False)
imports = memory_mb()
started = time.perf_counter()
engine = engine_module.load_engine(model_dirs(Path({models!r}), {mode!r}), ({mode!r},),
                                   AsrOptions(threads=2, quantize_int8={int8}))
load_s = time.perf_counter() - started
loaded = memory_mb()
engine.warm_up()
print(json.dumps({{"imports": imports, "loaded": loaded, "warm": memory_mb(), "load_s": load_s}}))
"""


def run_variant(models: Path, mode: str, int8: bool, skip_init: bool) -> dict:
    code = _CHILD.format(root=str(ROOT), bench=str(BENCH_DIR), models=str(models), mode=mode,
                         int8=int8, skip_init=skip_init)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=1800, env={"PATH": "/usr/bin:/bin", "OMP_WAIT_POLICY": "PASSIVE",
                                             "HF_HUB_OFFLINE": "1"})
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, default=ROOT / ".cache" / "full-models")
    parser.add_argument("--mode", default="paraformer", choices=("paraformer", "sensevoice"))
    args = parser.parse_args(argv)
    info = procstat.machine_info()
    print(f"machine: {info['nproc']} cores ({info['cpu_model']}), {info['mem_total_gib']} GiB; "
          f"load {info['loadavg'][0]:.1f}; mode {args.mode}; models {args.models}")
    print("| weights | loader | resident after imports | resident after load | peak (VmHWM) after load "
          "| resident after warm-up | peak after warm-up | load s |")
    print("|---|---|---|---|---|---|---|---|")
    for name, int8, skip_init in VARIANTS:
        r = run_variant(args.models, args.mode, int8, skip_init)
        print(f"| {name} | {'skip-init (now)' if skip_init else 'random-init (before)'} "
              f"| {r['imports'][0]:.0f} MB | {r['loaded'][0]:.0f} MB | {r['loaded'][1]:.0f} MB "
              f"| {r['warm'][0]:.0f} MB | {r['warm'][1]:.0f} MB | {r['load_s']:.1f} |", flush=True)
    print("(MB here = MiB: /proc/self/status kB / 1024)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
