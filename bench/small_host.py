"""Small-host benchmark (issue #21): the default stack and the small-host profile, in one run.

``bench/stack_bench.py --small-host`` runs this. For each profile (``default``:
the settings' defaults, fp32; ``small-host``: ``deploy/profiles/small-host.env``)
it starts the four real processes (``stackbench.harness.Stack``, full-size
random-weight models), then measures:

* **memory**: ``VmRSS`` of each process after it reports SERVING, summed
  (target <= 1.5 GiB), and the summed ``VmHWM`` (peak resident, loading
  included) after 4 concurrent real-time streams (target <= 1.8 GiB);
* **CPU per audio second**: stack CPU seconds (utime + stime of the four
  processes) for ``--dense-s`` of speech-dense audio streamed as fast as the
  gateway takes it (target: small-host <= 0.5 x default);
* **capacity**: N concurrent real-time streams (starts staggered) through a
  gateway admitting any number, N = 1, 2, 3, ...; capacity = the most N whose
  p95 final-result latency is <= 1.5 s with no refusal or segment error
  (target: small-host >= 2 x default). The sweep stops after the first N that
  misses;
* **beyond capacity**: ``MAX_SESSIONS + 2`` streams through the profile's own
  gateway: the extra streams must be refused (RESOURCE_EXHAUSTED) at once and
  the admitted ones keep p95 <= 1.5 s (refusals, not collapse);
* **int8 drift** per model, in a separate process: ASR token agreement int8 vs
  fp32 (1 - character edit distance / length, over every shared clip's
  manifest segments) and the emotion model's largest probability difference,
  for torch int8 and for the onnxruntime int8 export the small-host profile
  serves (exported first if ``<models>/emotion-.../onnx/`` lacks it).

Random-weight caveat: speed and memory are those of the real models; the
drift figures compare two random networks' outputs, which says how much int8
moves the numbers, not how accurate either is.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
for path in (str(ROOT), str(BENCH_DIR)):
    if path not in sys.path:
        sys.path.insert(0, path)

import procstat  # noqa: E402

__all__ = ["PROFILES", "run_small_host", "render", "markdown"]

TARGET_RESIDENT_MIB = 1.5 * 1024
TARGET_PEAK_MIB = 1.8 * 1024
TARGET_P95_S = 1.5
TARGET_CPU_RATIO = 0.5
TARGET_CAPACITY_RATIO = 2.0
PEAK_STREAMS = 4
STREAM_UTTERANCES_S = (4.0, 5.0)


def _profile_env(name: str) -> dict[str, str]:
    from services.launcher import read_profile

    return {} if name == "default" else read_profile(name)


PROFILES: dict[str, Callable[[], dict[str, str]]] = {
    "default": lambda: {"OMP_WAIT_POLICY": "PASSIVE"},  # what the launcher and compose set
    "small-host": lambda: _profile_env("small-host"),
}


def _levenshtein(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


# ---- int8 drift (child process) ------------------------------------------------------------

_DRIFT_CHILD = r"""
import json, sys
sys.path.insert(0, {root!r}); sys.path.insert(0, {bench!r})
from pathlib import Path
import numpy as np, torch
from small_host import _levenshtein
from asr_bench import model_dirs
from scripts.shared_audio import load_manifest, read_clip
from services.common.offline import enable_offline_mode
enable_offline_mode()
segments = []
for name, entry in sorted(load_manifest().items()):
    audio, _ = read_clip(name)
    for seg in entry["segments"]:
        piece = audio[int(seg["start"] * 16000):int(seg["end"] * 16000)]
        if piece.size >= 8000:
            segments.append(piece.astype(np.float32))
models = Path({models!r})
out = {{"segments": len(segments)}}
from services.asr.engine import load_engine
from services.asr.requests import AsrOptions, AsrRequest
texts = {{}}
for variant, int8 in (("fp32", False), ("int8", True)):
    engine = load_engine(model_dirs(models, "paraformer"), ("paraformer",), AsrOptions(threads=2, quantize_int8=int8))
    texts[variant] = [engine.transcribe(AsrRequest(s, mode="paraformer")).raw_text.replace(" ", "") for s in segments]
    del engine
chars = sum(len(t) for t in texts["fp32"])
edits = sum(_levenshtein(a, b) for a, b in zip(texts["fp32"], texts["int8"]))
out["asr"] = {{"fp32_chars": chars, "edits": edits, "token_agreement": round(1 - edits / max(chars, 1), 4),
              "identical_segments": sum(a == b for a, b in zip(texts["fp32"], texts["int8"]))}}
from services.emotion.engine import EmotionEngine, EmotionOptions
from services.emotion.speechbrain import load_speechbrain_model
probs = {{}}
for variant, int8 in (("fp32", False), ("int8", True)):
    engine = EmotionEngine(load_speechbrain_model(models / "emotion-recognition-wav2vec2-IEMOCAP", quantize_int8=int8),
                           EmotionOptions())
    probs[variant] = np.array([[s.probability for s in engine.classify(x).scores] for x in segments])
from services.emotion.onnx_runtime import load_onnx_model
onnx_dir = models / "emotion-recognition-wav2vec2-IEMOCAP" / "onnx"
engine = EmotionEngine(load_onnx_model(onnx_dir, quantized=True, threads=2),
                       EmotionOptions())
probs["onnx-int8"] = np.array([[s.probability for s in engine.classify(x).scores] for x in segments])
for variant in ("int8", "onnx-int8"):
    diff = np.abs(probs["fp32"] - probs[variant])
    out["emotion" if variant == "int8" else "emotion_onnx"] = {{
        "max_abs_diff": round(float(diff.max()), 4), "mean_abs_diff": round(float(diff.mean()), 4),
        "same_label": int((probs["fp32"].argmax(1) == probs[variant].argmax(1)).sum())}}
print(json.dumps(out))
"""


def int8_drift(models_dir: Path) -> dict:
    code = _DRIFT_CHILD.format(root=str(ROOT), bench=str(BENCH_DIR), models=str(models_dir))
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=3600,
                          env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1",
                               "TRANSFORMERS_OFFLINE": "1"})
    if done.returncode != 0:
        return {"error": done.stderr[-2000:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---- one profile ---------------------------------------------------------------------------

def _streams(address: str, workloads: list, chunk_ms: int) -> list:
    from stackbench.workload import run_stream

    runs: list = [None] * len(workloads)

    def client(i: int) -> None:
        runs[i] = run_stream(address, workloads[i], realtime=True, chunk_ms=chunk_ms)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(workloads))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return runs


def _stream_stats(runs: list) -> dict:
    from stackbench.workload import latency_stats

    latencies = [x for run in runs for x in run.latencies().values()]
    refused = [run for run in runs if run.error]
    return {"streams": len(runs), **latency_stats(latencies), "refused": len(refused),
            "refusal_codes": sorted({run.error for run in refused}),
            "segment_errors": sum(run.segment_errors() for run in runs),
            "error_codes": {code: n for run in runs for code, n in run.error_codes().items()}}


class ProfileRun:
    def __init__(self, name: str, env: dict[str, str], models_dir: Path, out_dir: Path, dense_s: float,
                 max_streams: int, log: Callable[[str], None]):
        self.name, self.env, self.models_dir, self.out_dir = name, env, models_dir, out_dir
        self.dense_s, self.max_streams, self.log = dense_s, max_streams, log

    def workloads(self, n: int, pool) -> list:
        import statistics

        from stackbench.workload import build_workload

        period_s = statistics.fmean(STREAM_UTTERANCES_S) + 1.0
        return [build_workload(f"s{n}_{i}", pool, STREAM_UTTERANCES_S, 1.0, 1.0 + i * period_s / n, 1.5)
                for i in range(n)]

    def run(self) -> dict:
        import tempfile

        from stackbench.harness import CpuMeter, Stack
        from stackbench.workload import SpeechPool, build_workload, dense_lengths, run_stream

        work = Path(tempfile.mkdtemp(prefix=f"small-host-{self.name}-"))
        logs = self.out_dir / "logs" / self.name
        logs.mkdir(parents=True, exist_ok=True)
        stack = Stack(self.models_dir, work, logs, 30.0, self.env)
        out: dict[str, Any] = {"env": self.env}
        pool = SpeechPool()
        try:
            self.log(f"{self.name}: starting the stack")
            stack.start()
            out["load_s"] = dict(stack.load_s)
            out["after_load"] = stack.memory()
            uncapped = stack.start_extra_gateway("gateway_uncapped", {"MAX_SESSIONS": "64"})

            self.log(f"{self.name}: {PEAK_STREAMS} concurrent real-time streams (peak memory)")
            with CpuMeter(stack) as meter:
                runs = _streams(stack.address, self.workloads(PEAK_STREAMS, pool), 100)
            out["peak_streams"] = {**_stream_stats(runs), "cpu": meter.summary(), "memory": stack.memory()}

            self.log(f"{self.name}: {self.dense_s:g} s of speech-dense audio as fast as possible")
            dense = build_workload("dense", pool, dense_lengths(self.dense_s, 1.0, 0.5, 1.5), 1.0, 0.5, 1.5)
            with CpuMeter(stack) as meter:
                run = run_stream(stack.address, dense, realtime=False, chunk_ms=100)
            out["dense"] = {"audio_s": round(dense.audio_s, 2), "speech_s": round(dense.speech_s, 2),
                            "segments": len(run.results), "segment_errors": run.segment_errors(),
                            "error": run.error, "cpu_s": round(meter.stack_s, 2),
                            "per_service_cpu_s": meter.per_service,
                            "cpu_s_per_audio_s": round(meter.stack_s / dense.audio_s, 4),
                            "per_service_cpu_s_per_audio_s": {k: round(v / dense.audio_s, 4)
                                                              for k, v in meter.per_service.items()},
                            "wall_s": round(meter.wall_s, 2)}

            sweep: dict[str, dict] = {}
            capacity = 0
            for n in range(1, self.max_streams + 1):
                self.log(f"{self.name}: capacity sweep, {n} concurrent real-time streams")
                with CpuMeter(stack) as meter:
                    stats = _stream_stats(_streams(uncapped, self.workloads(n, pool), 100))
                stats["cpu_use"] = meter.summary()["stack_cpu_use"]
                sweep[str(n)] = stats
                ok = (stats["p95_s"] is not None and stats["p95_s"] <= TARGET_P95_S and not stats["refused"]
                      and not stats["segment_errors"])
                if not ok:
                    break
                capacity = n
            out["capacity_sweep"] = sweep
            out["capacity"] = capacity

            max_sessions = int(self.env.get("MAX_SESSIONS", "0"))
            beyond = max_sessions + 2
            if max_sessions:  # only a profile that caps sessions (the default's 16 is far past capacity)
                self.log(f"{self.name}: {beyond} streams through the gateway (MAX_SESSIONS={max_sessions})")
                stats = _stream_stats(_streams(stack.address, self.workloads(beyond, pool), 100))
                out["beyond_capacity"] = {**stats, "max_sessions": max_sessions}
            out["end"] = stack.memory()
        finally:
            stack.stop()
        return out


# ---- verdicts and report -------------------------------------------------------------------

def _sum(memory: dict, field: str) -> float:
    return round(sum(process[field] for role, process in memory.items() if role in
                     ("vad", "asr", "emotion", "gateway")), 1)


def verdicts(results: dict) -> list[dict]:
    d, s = results["profiles"]["default"], results["profiles"]["small-host"]
    out = []

    def add(target: str, measured: str, met: bool, miss: str = "") -> None:
        out.append({"target": target, "measured": measured, "met": met, "miss": "" if met else miss})

    resident = _sum(s["after_load"], "VmRSS")
    pss = _sum(s["after_load"], "Pss")
    add("small-host: summed resident after load <= 1.5 GiB (1536 MiB)",
        f"{resident:.0f} MiB VmRSS (Pss {pss:.0f} MiB); default {_sum(d['after_load'], 'VmRSS'):.0f} MiB",
        resident <= TARGET_RESIDENT_MIB, f"over by {resident - TARGET_RESIDENT_MIB:.0f} MiB")
    peak = _sum(s["peak_streams"]["memory"], "VmHWM")
    add(f"small-host: summed peak VmHWM incl. loading, {PEAK_STREAMS} real-time streams <= 1.8 GiB (1843 MiB)",
        f"{peak:.0f} MiB; default {_sum(d['peak_streams']['memory'], 'VmHWM'):.0f} MiB",
        peak <= TARGET_PEAK_MIB, f"over by {peak - TARGET_PEAK_MIB:.0f} MiB")
    ratio = s["dense"]["cpu_s_per_audio_s"] / d["dense"]["cpu_s_per_audio_s"]
    add("small-host CPU per audio second <= 0.5 x default",
        f"{s['dense']['cpu_s_per_audio_s']:.3f} vs {d['dense']['cpu_s_per_audio_s']:.3f} CPU-s/s = {ratio:.2f} x",
        ratio <= TARGET_CPU_RATIO, f"{ratio / TARGET_CPU_RATIO:.2f} x the allowed ratio")
    cap_d, cap_s = d["capacity"], s["capacity"]

    def shown(profile: dict, capacity: int) -> str:
        swept = len(profile["capacity_sweep"])
        first = profile["capacity_sweep"].get("1", {}).get("p95_s")
        if capacity == 0:
            return f"0 (one stream: p95 {first} s)"
        return f">= {capacity} (the sweep's limit)" if capacity == swept else str(capacity)

    ratio_note = "" if cap_d else "; the default holds no stream within 1.5 s, so the ratio is unbounded"
    add("capacity (concurrent real-time streams, p95 <= 1.5 s): small-host >= 2 x default",
        f"small-host {shown(s, cap_s)} vs default {shown(d, cap_d)} streams{ratio_note}",
        cap_s >= TARGET_CAPACITY_RATIO * max(cap_d, 1), f"{cap_s} < {TARGET_CAPACITY_RATIO * max(cap_d, 1):g}")
    beyond = s.get("beyond_capacity")
    if beyond:
        expected = beyond["streams"] - beyond["max_sessions"]
        held = beyond["p95_s"] is not None and beyond["p95_s"] <= TARGET_P95_S and not beyond["segment_errors"]
        add("beyond capacity: refusals, not collapse",
            f"{beyond['streams']} streams, MAX_SESSIONS={beyond['max_sessions']}: {beyond['refused']} refused "
            f"({', '.join(beyond['refusal_codes']) or 'none'}), admitted p95 {beyond['p95_s']} s, "
            f"{beyond['segment_errors']} segment errors",
            beyond["refused"] == expected and held, "admitted streams degraded or wrong refusals")
    return out


def markdown(results: dict) -> str:
    info = results["machine"]
    lines = [f"Run {results['started']} on {info['nproc']} cores ({info['cpu_model']}), "
             f"{info['mem_total_gib']} GiB RAM, load average {info['loadavg'][0]:.1f} at start; "
             f"random-weight models {results['models']}; `{results['command']}`.", ""]
    lines += ["| target | measured | verdict |", "|---|---|---|"]
    for v in results["verdicts"]:
        lines.append(f"| {v['target']} | {v['measured']} | {'met' if v['met'] else 'MISSED: ' + v['miss']} |")
    lines += ["", "| process | profile | resident after load | peak (VmHWM) after 4 streams | Pss after load "
              "| CPU-s per audio s (dense) |", "|---|---|---|---|---|---|"]
    for name, p in results["profiles"].items():
        for role in ("vad", "asr", "emotion", "gateway"):
            lines.append(f"| {role} | {name} | {p['after_load'][role]['VmRSS']:.0f} MiB "
                         f"| {p['peak_streams']['memory'][role]['VmHWM']:.0f} MiB "
                         f"| {p['after_load'][role]['Pss'] or 0:.0f} MiB "
                         f"| {p['dense']['per_service_cpu_s_per_audio_s'].get(role, 0):.3f} |")
        lines.append(f"| **sum** | {name} | {_sum(p['after_load'], 'VmRSS'):.0f} MiB "
                     f"| {_sum(p['peak_streams']['memory'], 'VmHWM'):.0f} MiB | {_sum(p['after_load'], 'Pss'):.0f} MiB "
                     f"| {p['dense']['cpu_s_per_audio_s']:.3f} |")
    lines += ["", "| concurrent real-time streams | " + " | ".join(results["profiles"]) + " |",
              "|---|" + "---|" * len(results["profiles"])]
    most = max(len(p["capacity_sweep"]) for p in results["profiles"].values())
    for n in range(1, most + 1):
        cells = []
        for p in results["profiles"].values():
            s = p["capacity_sweep"].get(str(n))
            cells.append("-" if s is None else f"p95 {s['p95_s']} s, refused {s['refused']}, "
                         f"errors {s['segment_errors']}, CPU use {s['cpu_use']:.0%}")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    drift = results.get("int8_drift")
    if drift and "asr" in drift:
        lines += ["", f"int8 drift over {drift['segments']} manifest segments: ASR (paraformer) token agreement "
                  f"int8 vs fp32 {drift['asr']['token_agreement']:.1%} ({drift['asr']['identical_segments']} "
                  f"segments identical); emotion largest probability difference {drift['emotion']['max_abs_diff']}, "
                  f"mean {drift['emotion']['mean_abs_diff']}, same top label on {drift['emotion']['same_label']} "
                  f"of {drift['segments']} segments (torch int8); onnxruntime int8 (the small-host profile's): "
                  f"largest {drift['emotion_onnx']['max_abs_diff']}, mean {drift['emotion_onnx']['mean_abs_diff']}, "
                  f"same top label on {drift['emotion_onnx']['same_label']}."]
    elif drift:
        lines += ["", f"int8 drift: failed ({drift.get('error', '')[-300:]})"]
    return "\n".join(lines)


def render(out_dir: Path) -> str:
    """Recompute verdicts and the report from ``out_dir/small_host.json``."""
    results = json.loads((out_dir / "small_host.json").read_text())
    results["verdicts"] = verdicts(results)
    (out_dir / "small_host.json").write_text(json.dumps(results, indent=1))
    text = markdown(results)
    (out_dir / "small_host.md").write_text(text + "\n")
    return text


def run_small_host(models_dir: Path, out_dir: Path, dense_s: float = 60.0, max_streams: int = 10,
                   drift: bool = True, command: str = "") -> dict:
    import datetime as dt

    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"started": dt.datetime.now().isoformat(timespec="seconds"),
                               "machine": procstat.machine_info(), "command": command, "models": str(models_dir),
                               "profiles": {}}

    def log(text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)

    emotion_dir = models_dir / "emotion-recognition-wav2vec2-IEMOCAP"
    if not (emotion_dir / "onnx" / "emotion-onnx.json").is_file():
        log("exporting the emotion model to ONNX (EMOTION_RUNTIME=onnx, scripts/export_emotion_onnx.py)")
        subprocess.run([sys.executable, "scripts/export_emotion_onnx.py", "--model-dir", str(emotion_dir)],
                       cwd=ROOT, check=True, capture_output=True)
    for name, env in PROFILES.items():
        results["profiles"][name] = ProfileRun(name, env(), models_dir, out_dir, dense_s, max_streams, log).run()
        (out_dir / "small_host.json").write_text(json.dumps(results, indent=1))
    if drift:
        log("int8 drift (ASR and emotion, fp32 vs int8, in a separate process)")
        results["int8_drift"] = int8_drift(models_dir)
    results["verdicts"] = verdicts(results)
    (out_dir / "small_host.json").write_text(json.dumps(results, indent=1))
    text = markdown(results)
    (out_dir / "small_host.md").write_text(text + "\n")
    print(text)
    return results
