"""The benchmark's phases: idle, single-stream latency, concurrent streams (and admission),
scaling, fp32 vs int8 ASR on the stack, and the naive monolith on the same audio.

:class:`Bench` runs them and collects their figures in ``results``; the report
(:mod:`stackbench.report`) turns those into tables, a plot and the targets' verdicts.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import soundfile as sf

from naive_monolith import NaiveStream, job_time_model, retranscription_ticks, simulate_server

from .harness import CpuMeter, Stack, host_busy_s
from .plan import TARGET_P95_S, Plan, latency_target_s
from .workload import (SAMPLE_RATE_HZ, SpeechPool, StreamRun, Workload, build_workload, dense_lengths,
                       latency_stats, match_segments, merge_counts, repeat_workload, run_stream)

__all__ = ["Bench"]

BENCH_DIR = Path(__file__).resolve().parents[1]
ROOT = BENCH_DIR.parent

class Bench:
    """Runs the phases and collects their figures in ``results``."""

    def __init__(self, plan: Plan, models_dir: Path, out_dir: Path, progress, quick: bool,
                 extra_env: dict | None = None):
        self.plan = plan
        self.extra_env = extra_env or {}
        self.models_dir = models_dir
        self.out_dir = out_dir
        self.progress = progress
        self.quick = quick
        self.results: dict[str, Any] = {}
        (out_dir / "logs").mkdir(parents=True, exist_ok=True)
        (out_dir / "workloads").mkdir(parents=True, exist_ok=True)
        self.work_dir = Path(tempfile.mkdtemp(prefix="stack-bench-"))
        self.root = self.work_dir / "project-root"
        self.root.mkdir()
        (self.root / "pretrained_models").symlink_to(models_dir, target_is_directory=True)
        self.workloads = self.build_workloads()
        self.naive_proc: subprocess.Popen | None = None
        self.naive_wanted = True

    def step(self, text: str) -> None:
        self.progress.set_description(text)

    def done(self) -> None:
        self.progress.update(1)

    def build_workloads(self) -> dict[str, Workload]:
        """Every phase's audio, built up front (the naive monolith reads the same files)."""
        p = self.plan
        pool = SpeechPool()
        out: dict[str, Workload] = {}

        def add(name: str, lengths: Sequence[float], lead_s: float) -> None:
            out[name] = build_workload(name, pool, lengths, p.gap_s, lead_s, p.tail_s)

        for length, count in zip(p.lengths_s, p.utterances_per_length):
            add(f"length_{length:g}s", [length] * count, p.lead_s)
        period_s = statistics.fmean(p.stream_utterances_s) + p.gap_s
        for n in p.streams:
            for i in range(n):  # starts staggered evenly over one utterance period
                add(f"streams{n}_{i}", p.stream_utterances_s, p.lead_s + i * period_s / n)
        # Scaling: every length is the reference block repeated, so the ratios compare the
        # same audio (speech share, utterance lengths); only how much of it there is differs.
        reference = p.scaling_s[0]
        add(f"scaling_{reference:g}s", dense_lengths(reference, p.gap_s, 0.5, p.tail_s), 0.5)
        for total in p.scaling_s[1:]:
            times = round(total / reference)
            if abs(times * reference - total) > 1e-6:
                raise ValueError(f"scaling lengths must be multiples of the first: {p.scaling_s}")
            out[f"scaling_{total:g}s"] = repeat_workload(f"scaling_{total:g}s", out[f"scaling_{reference:g}s"], times)
        for variant in ("fp32", "int8"):
            add(f"int8_{variant}_latency", p.int8_utterances_s, p.lead_s)
            add(f"int8_{variant}_scaling_{p.int8_scaling_s:g}s",
                dense_lengths(p.int8_scaling_s, p.gap_s, 0.5, p.tail_s), 0.5)
        return out

    # ---- stack ----------------------------------------------------------------------
    def run_stack(self) -> None:
        p = self.plan
        stack = Stack(self.models_dir, self.work_dir, self.out_dir / "logs", p.worker_timeout_s, self.extra_env)
        phases = self.results.setdefault("phase_wall_s", {})

        def phase(name: str, fn: Callable[[], Any]) -> Any:
            started = time.monotonic()
            value = fn()
            phases[name] = round(time.monotonic() - started, 1)
            return value

        try:
            self.step("starting the stack")
            phase("start", stack.start)
            after_load = stack.memory()
            self.results["stack_load_s"] = dict(stack.load_s)
            self.results["stack_load_cpu_s"] = {k: round(v, 2) for k, v in stack.cpu_after_load.items()}
            self.done()
            if self.quick:
                # A sanity run that must take about a minute: the naive monolith and the int8 ASR
                # worker load while the real-time phases stream (which leave the cores idle with
                # tiny models). The full run does everything one after the other.
                stack.start_side_asr({"ASR_INT8": "1"})
                if self.naive_wanted:
                    self.start_naive()
            with CpuMeter(stack) as idle:
                time.sleep(1.0 if self.quick else 3.0)
            self.results["stack_idle"] = idle.summary()
            self.results["latency_stack"] = phase("latency", lambda: self.single_stream(stack))
            self.results["throughput_stack"] = phase("throughput", lambda: self.throughput(stack))
            self.results["scaling_stack"] = phase("scaling", lambda: self.scaling(stack, p.scaling_s, "scaling"))
            self.results["memory_stack"] = {"after_load": after_load, "end": stack.memory()}
            self.results["int8"] = phase("int8", lambda: self.int8(stack))
        finally:
            stack.stop()

    def single_stream(self, stack: Stack) -> dict:
        p = self.plan
        out = {}
        for length, count in zip(p.lengths_s, p.utterances_per_length):
            self.step(f"latency: {count} x {length:g} s, real time")
            w = self.workloads[f"length_{length:g}s"]
            with CpuMeter(stack) as meter:
                run = run_stream(stack.address, w, realtime=True, chunk_ms=p.chunk_ms)
            lat = sorted(run.latencies().values())
            out[f"{length:g}"] = {"length_s": length, **latency_stats(lat), "latencies_s": [round(x, 3) for x in lat],
                                  "target_s": round(latency_target_s(length), 3),
                                  "segment_errors": run.segment_errors(), "error_codes": run.error_codes(),
                                  "error": run.error, "vad": match_segments(w, run), "cpu": meter.summary()}
            self.done()
        return out

    def throughput(self, stack: Stack) -> dict:
        p = self.plan
        out: dict[str, Any] = {"stream_audio_s": None, "by_streams": {}}
        for n in p.streams:
            self.step(f"throughput: {n} concurrent real-time streams")
            workloads = [self.workloads[f"streams{n}_{i}"] for i in range(n)]
            out["stream_audio_s"] = round(workloads[0].audio_s, 2)
            runs: list[StreamRun | None] = [None] * n

            def client(i: int) -> None:  # the threads are joined within this iteration
                runs[i] = run_stream(stack.address, workloads[i], realtime=True, chunk_ms=p.chunk_ms)  # noqa: B023

            threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
            with CpuMeter(stack) as meter:
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
            lat = [x for r in runs for x in r.latencies().values()]
            refused = [r for r in runs if r.error or r.segment_errors()]
            out["by_streams"][str(n)] = {
                "streams": n, **latency_stats(lat),
                "refused_streams": len(refused), "refused_share": round(len(refused) / n, 3),
                "refusal_codes": sorted({r.error for r in runs if r.error}),
                "segment_errors": sum(r.segment_errors() for r in runs),
                "error_codes": merge_counts(r.error_codes() for r in runs),
                "segments": sum(len(r.results) for r in runs),
                "vad_one_to_one": all(match_segments(w, r)["one_to_one"] for w, r in zip(workloads, runs)),
                "cpu": meter.summary(),
                "memory_after": stack.memory()}
            self.done()
        ok = [n for n in p.streams
              if (s := out["by_streams"][str(n)])["p95_s"] is not None and s["p95_s"] <= TARGET_P95_S
              and s["refused_streams"] == 0]
        out["max_streams_p95_ok"] = max(ok) if ok else 0
        most = max(p.streams)
        if 0 < out["max_streams_p95_ok"] < most:
            out["admission"] = self.admission(stack, most, out["max_streams_p95_ok"])
        return out

    def admission(self, stack: Stack, n: int, capacity: int) -> dict:
        """``n`` streams again, through a gateway admitting ``capacity`` (MAX_SESSIONS): the
        streams beyond it should be refused at once, and the admitted ones keep their p95."""
        p = self.plan
        self.step(f"admission: {n} streams, MAX_SESSIONS={capacity}")
        address = stack.start_extra_gateway("gateway_capped", {"MAX_SESSIONS": str(capacity)})
        try:
            workloads = [self.workloads[f"streams{n}_{i}"] for i in range(n)]
            runs: list[StreamRun | None] = [None] * n

            def client(i: int) -> None:
                runs[i] = run_stream(address, workloads[i], realtime=True, chunk_ms=p.chunk_ms)

            threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            stack.stop_extra_gateway("gateway_capped")
        admitted = [r for r in runs if not r.error]
        return {"streams": n, "max_sessions": capacity, "admitted": len(admitted),
                "refused": n - len(admitted), "refusal_codes": sorted({r.error for r in runs if r.error}),
                "segment_errors": sum(r.segment_errors() for r in admitted),
                **latency_stats([x for r in admitted for x in r.latencies().values()])}

    def scaling(self, stack: Stack, lengths: Sequence[float], tag: str) -> dict:
        p = self.plan
        out: dict[str, Any] = {"by_length": {}}
        for total in lengths:
            self.step(f"{tag}: {total:g} s as fast as possible")
            w = self.workloads[f"{tag}_{total:g}s"]
            with CpuMeter(stack) as meter:
                run = run_stream(stack.address, w, realtime=False, chunk_ms=p.fast_chunk_ms)
            out["by_length"][f"{total:g}"] = {
                "audio_s": round(w.audio_s, 2), "speech_s": round(w.speech_s, 2),
                "utterances": len(w.utterances), "segments": len(run.results),
                "segment_errors": run.segment_errors(), "error_codes": run.error_codes(), "error": run.error,
                "cpu_s": round(meter.stack_s, 2), "wall_s": round(meter.wall_s, 2),
                "cpu_s_per_audio_s": round(meter.stack_s / w.audio_s, 4), "cpu": meter.summary()}
            self.done()
        base = out["by_length"][f"{lengths[0]:g}"]["cpu_s"]
        for item in out["by_length"].values():
            item["ratio_to_first"] = round(item["cpu_s"] / base, 2) if base else None
        out["reference_s"] = lengths[0]
        return out

    def int8(self, stack: Stack) -> dict:
        p = self.plan
        out = {}
        for variant, env in (("fp32", None), ("int8", {"ASR_INT8": "1"})):
            if env is not None:
                self.step("int8: ASR worker with ASR_INT8=1")
                stack.use_asr(env)
            memory = stack.memory()["asr"]  # fp32: after the main phases; the render uses the load figures
            self.step(f"int8: {variant} latency")
            run = run_stream(stack.address, self.workloads[f"int8_{variant}_latency"], realtime=True,
                             chunk_ms=p.chunk_ms)
            by_length: dict[str, list[float]] = {}
            for sid, latency in run.latencies().items():
                start_s, end_s = run.ended[sid][1] / 1000, run.ended[sid][2] / 1000
                length = min(p.int8_utterances_s, key=lambda L: abs(L - (end_s - start_s)))
                by_length.setdefault(f"{length:g}", []).append(latency)
            scaling = self.scaling(stack, [p.int8_scaling_s], f"int8_{variant}_scaling")
            out[variant] = {"asr_memory_after_load": memory, "asr_memory_end": stack.memory()["asr"],
                            "asr_load_s": stack.load_s.get(stack.roles["asr"]),
                            "latency_by_length": {k: latency_stats(sorted(v)) for k, v in by_length.items()},
                            "latency_all": latency_stats(sorted(run.latencies().values())),
                            "segment_errors": run.segment_errors(), "error": run.error,
                            "compute": scaling["by_length"][f"{p.int8_scaling_s:g}"]}
            self.done()
        return out

    # ---- naive ----------------------------------------------------------------------
    def start_naive(self) -> None:
        """Start bench/naive_monolith.py on the same audio (a child process of its own)."""
        p = self.plan
        sessions = []
        for total in p.naive_scaling_s:
            sessions.append({"name": f"scaling_{total:g}s", "wav": str(self._wav(f"scaling_{total:g}s")),
                             "retranscribe": True, "measured_ticks": p.naive_measured_ticks})
        for length in p.lengths_s:
            name = f"length_{length:g}s"
            sessions.append({"name": name, "wav": str(self._wav(name)), "retranscribe": False})
        # Stop processing of one throughput stream (they differ only in content and lead silence).
        sessions.append({"name": "stream", "wav": str(self._wav(f"streams{p.streams[0]}_0")), "retranscribe": False})
        job = {"interval_s": p.naive_interval_s, "cap_s": p.naive_cap_s, "sessions": sessions}
        job_path = self.out_dir / "workloads" / "naive_job.json"
        job_path.write_text(json.dumps(job, indent=2))
        self.naive_out = self.work_dir / "naive.json"
        command = [sys.executable, str(BENCH_DIR / "naive_monolith.py"), "--project-root", str(self.root),
                   "--model-cache-dir", str(self.models_dir / "model_cache"), "--job", str(job_path),
                   "--out", str(self.naive_out)]
        self.naive_started, self.naive_host = time.monotonic(), host_busy_s()
        self.naive_log = open(self.out_dir / "logs" / "naive.log", "wb")
        self.naive_proc = subprocess.Popen(command, cwd=ROOT, stdout=self.naive_log, stderr=subprocess.STDOUT,
                                           env={**os.environ, **self.extra_env, "PYTHONUNBUFFERED": "1"})

    def finish_naive(self) -> None:
        self.step("naive monolith: load, re-transcriptions, stop processing")
        code = self.naive_proc.wait()
        self.naive_log.close()
        if code != 0:
            raise RuntimeError(f"naive monolith failed; see {self.out_dir / 'logs' / 'naive.log'}")
        raw = json.loads(self.naive_out.read_text())
        raw["host_busy_cpu_s"] = round(host_busy_s() - self.naive_host, 2)
        raw["wall_s"] = round(time.monotonic() - self.naive_started, 1)
        self.results["naive_raw"] = raw
        self.results["naive"] = self.naive_figures(raw)
        self.done()

    def stop_naive(self) -> None:
        if self.naive_proc is not None and self.naive_proc.poll() is None:
            self.naive_proc.kill()
            self.naive_proc.wait()

    def _wav(self, name: str) -> Path:
        path = self.out_dir / "workloads" / f"{name}.wav"
        if not path.exists():
            sf.write(path, self.workloads[name].samples, SAMPLE_RATE_HZ, subtype="PCM_16")
        return path

    def naive_figures(self, raw: dict) -> dict:
        """Memory, simulated latencies and compute of the naive monolith (see naive_monolith.py)."""
        p = self.plan
        sessions = raw["sessions"]
        longest = max((s for s in sessions if s.startswith("scaling_")), key=lambda s: sessions[s]["audio_s"])
        measured = [(j["buffer_s"], j["wall_s"]) for j in sessions[longest]["retranscriptions"]]
        measured_cpu = [(j["buffer_s"], j["cpu_s"]) for j in sessions[longest]["retranscriptions"]]
        wall_model, cpu_model = job_time_model(measured), job_time_model(measured_cpu)

        def stream_for(name: str, workload: Workload, offset_s: float = 0.0) -> NaiveStream:
            ticks = retranscription_ticks(workload.audio_s, p.naive_interval_s)
            return NaiveStream(offset_s=offset_s, audio_s=workload.audio_s,
                               jobs=[(t, wall_model(t)) for t in ticks],
                               stop_s=sessions[name]["stop"]["wall_s"],
                               segment_ends_s=[end for _, end in workload.utterances])

        latency = {}
        for length in p.lengths_s:
            name = f"length_{length:g}s"
            stream = stream_for(name, self.workloads[name])
            simulate_server([stream])
            lat = sorted(stream.latencies())
            stop_s = sessions[name]["stop"]["wall_s"]
            latency[f"{length:g}"] = {"length_s": length, **latency_stats(lat), "stop_processing_s": stop_s,
                                      "backlog_at_stop_s": round(max(stream.result_at_s - stop_s - stream.audio_s, 0),
                                                                 3)}

        throughput = {}
        for n in p.streams:
            streams = [stream_for("stream", self.workloads[f"streams{n}_{i}"]) for i in range(n)]
            busy = simulate_server(streams)
            lat = [x for s in streams for x in s.latencies()]
            span = max(s.result_at_s for s in streams)
            throughput[str(n)] = {"streams": n, **latency_stats(lat), "refused_streams": 0,
                                  "busy_share": round(busy / span, 3)}
        ok = [n for n in p.streams if throughput[str(n)]["p95_s"] <= TARGET_P95_S]

        scaling = {}
        for total in p.naive_scaling_s:
            s = sessions[f"scaling_{total:g}s"]
            scaling[f"{total:g}"] = {
                "audio_s": s["audio_s"], "cpu_s": s["cpu_s_total"], "measured": True,
                "retranscriptions_run": len(s["retranscriptions"]), "retranscriptions_total": s["ticks"],
                "retranscription_cpu_s": round(s["cpu_s_total"] - s["stop"]["cpu_s"], 2),
                "stop_cpu_s": s["stop"]["cpu_s"]}
        # Longer than the old server's cap: extrapolated from the measured job model, labelled.
        stops = sorted((sessions[f"scaling_{t:g}s"]["audio_s"], sessions[f"scaling_{t:g}s"]["stop"]["cpu_s"])
                       for t in p.naive_scaling_s)
        stop_model = job_time_model(stops)
        for total in p.scaling_s:
            if f"{total:g}" in scaling:
                continue
            jobs = sum(cpu_model(t) for t in retranscription_ticks(total, p.naive_interval_s))
            scaling[f"{total:g}"] = {
                "audio_s": total, "cpu_s": None, "measured": False,
                "note": (f"refused by the old server (over its {p.naive_cap_s:g} s cap)" if total > p.naive_cap_s
                         else "not run in this mode"),
                "extrapolated_cpu_s": round(jobs + stop_model(total), 1)}
        base = scaling[f"{p.scaling_s[0]:g}"]["cpu_s"]
        for item in scaling.values():
            value = item["cpu_s"] if item["cpu_s"] is not None else item["extrapolated_cpu_s"]
            item["ratio_to_first"] = round(value / base, 2) if base else None

        memory = {"after_load": raw["memory_after_warmup"], "load_peak_mib": raw["memory_after_load"]["VmHWM"],
                  "peak_mib": max([raw["memory_after_load"]["VmHWM"]] +
                                  [s["memory_end"]["VmHWM"] for s in sessions.values() if "memory_end" in s]),
                  "end": raw["memory_end"]}
        return {"memory": memory, "latency": latency,
                "throughput": {"by_streams": throughput, "max_streams_p95_ok": max(ok) if ok else 0,
                               "simulated": True},
                "scaling": {"by_length": scaling, "reference_s": p.scaling_s[0]},
                "job_model": {"from_session": longest, "wall_s_per_buffer_s": round(getattr(wall_model, "slope", 0), 4),
                              "wall_s_intercept": round(getattr(wall_model, "intercept", 0), 4)},
                "load_s": raw["load"]["wall_s"]}
