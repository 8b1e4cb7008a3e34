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
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH_DIR))

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

import procstat  # noqa: E402
from naive_monolith import NaiveStream, job_time_model, retranscription_ticks, simulate_server  # noqa: E402

SAMPLE_RATE_HZ = 16_000
SHARED_AUDIO = ROOT.parent / "shared" / "audio"
FULL_MODELS = ROOT / ".cache" / "full-models"
RESULTS_DIR = BENCH_DIR / "results"
README = BENCH_DIR / "README.md"
README_BEGIN = "<!-- stack_bench:begin -->"
README_END = "<!-- stack_bench:end -->"
SERVICES = ("vad", "asr", "emotion", "gateway")

# Targets (2-core CPU, paraformer mode with emotion, full-size models).
TARGET_STACK_RSS_MIB = 4.0e9 / 2**20  # 4.0 GB (decimal), in MiB
TARGET_SCALING_RATIO = 7.0
TARGET_STREAMS = 4
TARGET_P95_S = 3.0


def latency_target_s(length_s: float) -> float:
    """Final-result latency target for a segment of ``length_s``: 0.25 x length + 300 ms."""
    return 0.25 * length_s + 0.3


@dataclass(frozen=True)
class Plan:
    """What one run measures. ``FULL`` and ``QUICK`` are the two presets."""

    lengths_s: tuple[float, ...]
    """Utterance lengths for the single-stream latency test."""
    utterances_per_length: tuple[int, ...]
    streams: tuple[int, ...]
    """Concurrent stream counts for the throughput test."""
    stream_utterances_s: tuple[float, ...]
    """Utterance lengths of each throughput stream (in order, 1 s gaps)."""
    scaling_s: tuple[float, ...]
    """Total audio lengths for the scaling test (first is the reference)."""
    naive_scaling_s: tuple[float, ...]
    """Scaling lengths the naive monolith runs (it refused recordings over ``naive_cap_s``)."""
    int8_utterances_s: tuple[float, ...]
    """One stream with these utterances, on fp32 and int8 ASR."""
    int8_scaling_s: float
    chunk_ms: int = 100
    """Client chunk size at real-time pace."""
    fast_chunk_ms: int = 100
    """Client chunk size when streaming as fast as possible."""
    gap_s: float = 1.0
    lead_s: float = 1.0
    tail_s: float = 1.5
    naive_interval_s: float = 2.0
    naive_cap_s: float = 60.0
    naive_measured_ticks: int | None = 8
    """Re-transcriptions the naive monolith runs per recording (rest interpolated); None: all."""
    worker_timeout_s: float = 30.0
    """Gateway WORKER_TIMEOUT_S (the deployed default)."""


FULL = Plan(
    lengths_s=(2, 5, 10, 20), utterances_per_length=(4, 3, 2, 2),
    streams=(1, 2, 4, 8), stream_utterances_s=(4, 5),
    scaling_s=(10, 60, 300), naive_scaling_s=(10, 60),
    int8_utterances_s=(5, 10), int8_scaling_s=30,
)
QUICK = Plan(
    lengths_s=(2, 5), utterances_per_length=(1, 1),
    streams=(1, 2), stream_utterances_s=(3,),
    scaling_s=(10, 20), naive_scaling_s=(10,),
    int8_utterances_s=(2,), int8_scaling_s=5, lead_s=0.5, tail_s=1.0, naive_measured_ticks=None,
)

# Utterance lengths of the speech-dense scaling audio, cycled.
SCALING_CYCLE_S = (4, 7, 3, 10, 6)


# ---------------------------------------------------------------------------------- test audio

class SpeechPool:
    """The manifest's speech segments, cut at their exact boundaries, handed out in turn."""

    def __init__(self, audio_dir: Path = SHARED_AUDIO):
        manifest = json.loads((audio_dir / "manifest.json").read_text())
        self.segments: list[np.ndarray] = []
        for entry in manifest.values():
            samples, rate = sf.read(audio_dir / entry["file"], dtype="int16")
            if rate != SAMPLE_RATE_HZ or samples.ndim != 1:
                raise ValueError(f"{entry['file']}: expected 16 kHz mono")
            for segment in entry["segments"]:
                piece = samples[round(segment["start"] * rate): round(segment["end"] * rate)]
                if piece.size >= SAMPLE_RATE_HZ:  # sub-second pieces make choppy utterances
                    self.segments.append(piece)
        self.cursor = 0

    def utterance(self, seconds: float) -> np.ndarray:
        """``seconds`` of continuous speech: whole segments back to back, the last one cut."""
        wanted = int(round(seconds * SAMPLE_RATE_HZ))
        pieces, have = [], 0
        while have < wanted:
            piece = self.segments[self.cursor % len(self.segments)]
            self.cursor += 1
            pieces.append(piece)
            have += piece.size
        out = np.concatenate(pieces)[:wanted].copy()
        fade = min(160, out.size)  # 10 ms fade-out: no click where a segment was cut
        out[-fade:] = (out[-fade:] * np.linspace(1, 0, fade)).astype(np.int16)
        return out


@dataclass
class Workload:
    name: str
    samples: np.ndarray = field(repr=False)
    """int16 mono 16 kHz."""
    utterances: list[tuple[float, float]]
    """(start_s, end_s) of each utterance."""

    @property
    def audio_s(self) -> float:
        return self.samples.size / SAMPLE_RATE_HZ

    @property
    def speech_s(self) -> float:
        return sum(end - start for start, end in self.utterances)


def repeat_workload(name: str, block: Workload, times: int) -> Workload:
    """``block`` back to back ``times`` times: the same speech density and utterance mix."""
    period = block.audio_s
    utterances = [(round(start + k * period, 3), round(end + k * period, 3))
                  for k in range(times) for start, end in block.utterances]
    return Workload(name, np.tile(block.samples, times), utterances)


def build_workload(name: str, pool: SpeechPool, lengths_s: Sequence[float], gap_s: float,
                   lead_s: float, tail_s: float) -> Workload:
    parts = [np.zeros(int(lead_s * SAMPLE_RATE_HZ), np.int16)]
    utterances, t = [], lead_s
    for index, length in enumerate(lengths_s):
        parts.append(pool.utterance(length))
        utterances.append((round(t, 3), round(t + length, 3)))
        t += length
        pause = tail_s if index == len(lengths_s) - 1 else gap_s
        parts.append(np.zeros(int(pause * SAMPLE_RATE_HZ), np.int16))
        t += pause
    return Workload(name, np.concatenate(parts), utterances)


def dense_lengths(total_s: float, gap_s: float, lead_s: float, tail_s: float) -> list[float]:
    """Utterance lengths (cycling SCALING_CYCLE_S) that fill ``total_s`` of audio."""
    lengths, t, i = [], lead_s, 0
    while True:
        length = SCALING_CYCLE_S[i % len(SCALING_CYCLE_S)]
        room = total_s - tail_s - t
        if room < 1.0:
            break
        lengths.append(min(length, room))
        t += lengths[-1] + gap_s
        i += 1
    return lengths


# ------------------------------------------------------------------------------------ the stack

class Stack:
    """The four processes, started through services.common.processes (free ports, health SERVING).

    ``roles`` maps each role (vad, asr, emotion, gateway) to the server that
    plays it now: the quick run starts a second ASR worker (int8) and gateway
    next to the first, and switches roles instead of restarting.
    """

    def __init__(self, models_dir: Path, work_dir: Path, log_dir: Path, worker_timeout_s: float = 30.0,
                 extra_env: dict | None = None):
        self.models_dir = models_dir
        self.root = work_dir / "project-root"
        self.root.mkdir(parents=True, exist_ok=True)
        link = self.root / "pretrained_models"
        if not link.exists():
            link.symlink_to(models_dir, target_is_directory=True)
        self.log_dir = log_dir
        self.worker_timeout_s = worker_timeout_s
        self.model_env = {**(extra_env or {}), "MODEL_CACHE_DIR": str(models_dir / "model_cache"),
                          "PROJECT_ROOT": str(self.root)}
        self.servers: dict[str, Any] = {}
        self.load_s: dict[str, float] = {}
        self.roles = {role: role for role in SERVICES}

    @property
    def pids(self) -> dict[str, int]:
        """Role -> pid of the process playing it."""
        return {role: self.servers[name].proc.pid for role, name in self.roles.items() if name in self.servers}

    def _start(self, specs: Sequence[tuple[str, str, dict]], timeout_s: float = 900) -> None:
        from services.common.processes import start_server, wait_for_serving

        started = time.monotonic()
        for name, module, env in specs:
            # Registered at once: stopped (and its log kept) even if it never serves.
            self.servers[name] = start_server(module, f"bench-{name}", env=env, wait_serving=False,
                                              timeout_s=timeout_s)
        for name, _, _ in specs:
            wait_for_serving(self.servers[name], time.monotonic() + timeout_s)
            self.load_s[name] = round(time.monotonic() - started, 1)

    def _asr_spec(self, name: str, asr_env: dict | None) -> tuple[str, str, dict]:
        return (name, "services.asr.server", {**self.model_env, "ASR_MODE": "paraformer", **(asr_env or {})})

    def _gateway_spec(self, name: str, asr_name: str, env: dict | None = None) -> tuple[str, str, dict]:
        return (name, "gateway.server", {
            **{k: v for k, v in self.model_env.items() if k not in ("MODEL_CACHE_DIR", "PROJECT_ROOT")},
            "VAD_ADDRESS": self.servers["vad"].address, "ASR_ADDRESS": self.servers[asr_name].address,
            "EMOTION_ADDRESS": self.servers["emotion"].address,
            "WORKER_TIMEOUT_S": f"{self.worker_timeout_s:g}", **(env or {})})

    def start_extra_gateway(self, name: str, env: dict) -> str:
        """One more gateway, with ``env``, in front of the current workers; its address."""
        self._start([self._gateway_spec(name, self.roles["asr"], env)])
        return self.servers[name].address

    def stop_extra_gateway(self, name: str) -> None:
        self._stop_one(name)

    def start(self) -> None:
        """Workers concurrently (as a deployment would start them), then the gateway."""
        self._start([("vad", "services.vad.server", self.model_env), self._asr_spec("asr", None),
                     ("emotion", "services.emotion.server", self.model_env)])
        self._start([self._gateway_spec("gateway", "asr")])
        self.cpu_after_load = self.cpu()

    def start_side_asr(self, asr_env: dict) -> None:
        """Start a second ASR worker ("asr_side") with ``asr_env`` and a gateway in front of it,
        in the background; :meth:`use_asr` waits for them."""

        def run() -> None:
            try:
                self._start([self._asr_spec("asr_side", asr_env)])
                self._start([self._gateway_spec("gateway_side", "asr_side")])
            except BaseException as exc:  # noqa: BLE001 - re-raised in use_asr
                self._side_error = exc

        self._side_error: BaseException | None = None
        self._side = threading.Thread(target=run, daemon=True)
        self._side.start()

    def use_asr(self, asr_env: dict) -> None:
        """Let an ASR worker with ``asr_env`` play the asr role: the side one if started, else a restart."""
        if getattr(self, "_side", None) is not None:
            self._side.join()
            if self._side_error is not None:
                raise self._side_error
            self.roles.update(asr="asr_side", gateway="gateway_side")
            return
        for name in ("gateway", "asr"):
            self._stop_one(name)
        self._start([self._asr_spec("asr", asr_env)])
        self._start([self._gateway_spec("gateway", "asr")])

    @property
    def address(self) -> str:
        return self.servers[self.roles["gateway"]].address

    def memory(self) -> dict[str, dict]:
        return {role: {**procstat.memory_mib(pid), "Pss": procstat.pss_mib(pid)} for role, pid in self.pids.items()}

    def cpu(self) -> dict[str, float]:
        return {role: procstat.cpu_seconds(pid) for role, pid in self.pids.items()}

    def _stop_one(self, name: str) -> None:
        server = self.servers.pop(name, None)
        if server is None:
            return
        server.stop()
        suffix = 1
        target = self.log_dir / f"{name}.log"
        while target.exists():
            suffix += 1
            target = self.log_dir / f"{name}.{suffix}.log"
        shutil.copy(server.log_path, target)

    def stop(self) -> None:
        for name in ("gateway_side", "gateway", "asr_side", "asr", "emotion", "vad"):
            self._stop_one(name)


class CpuMeter:
    """CPU seconds used by the stack, by this process and by everything else, over a phase."""

    def __init__(self, stack: Stack):
        self.stack = stack

    def __enter__(self) -> "CpuMeter":
        self.wall = time.monotonic()
        self.stack_cpu = self.stack.cpu()
        self.own = procstat.cpu_seconds("self")
        self.host = _host_busy_s()
        return self

    def __exit__(self, *exc) -> None:
        self.wall_s = time.monotonic() - self.wall
        after = self.stack.cpu()
        self.per_service = {name: round(after[name] - self.stack_cpu.get(name, after[name]), 3) for name in after}
        self.stack_s = sum(self.per_service.values())
        self.own_s = procstat.cpu_seconds("self") - self.own
        self.other_s = max(_host_busy_s() - self.host - self.stack_s - self.own_s, 0.0)

    def summary(self) -> dict:
        cores = procstat.machine_info()["nproc"]
        return {"wall_s": round(self.wall_s, 2), "stack_cpu_s": round(self.stack_s, 2),
                "per_service_cpu_s": self.per_service,
                "stack_cpu_use": round(self.stack_s / self.wall_s / cores, 3),
                "bench_client_cpu_s": round(self.own_s, 2),
                "other_processes_cpu_s": round(self.other_s, 2),
                "loadavg_1min": round(os.getloadavg()[0], 2)}


def _host_busy_s() -> float:
    """Busy CPU seconds of the whole host (all processes) from /proc/stat."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in fields]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    busy = sum(values[:8]) - idle  # user nice system idle iowait irq softirq steal
    return busy / procstat.CLOCK_TICKS_PER_S


# ---------------------------------------------------------------------------------- the client

@dataclass
class StreamRun:
    """What one Analyze call saw, with client-side arrival times (time.monotonic())."""

    ended: dict[int, tuple[float, int, int]] = field(default_factory=dict)
    """segment id -> (arrival, start_ms, end_ms)"""
    results: dict[int, tuple[float, list[str]]] = field(default_factory=dict)
    """segment id -> (arrival, errors)"""
    error: str | None = None
    """gRPC status code name when the call failed."""
    wall_s: float = 0.0

    def latencies(self) -> dict[int, float]:
        return {sid: self.results[sid][0] - self.ended[sid][0]
                for sid in self.ended if sid in self.results and not self.results[sid][1]}

    def segment_errors(self) -> int:
        return sum(1 for _, errors in self.results.values() if errors)

    def error_codes(self) -> dict[str, int]:
        """Segments with errors, by the first gRPC status code named in their errors."""
        codes: dict[str, int] = {}
        for _, errors in self.results.values():
            if errors:
                code = next((part for error in errors for part in error.replace(":", " ").split()
                             if part.isupper() and "_" in part), "OTHER")
                codes[code] = codes.get(code, 0) + 1
        return codes


def run_stream(address: str, workload: Workload, realtime: bool, chunk_ms: int,
               timeout_s: float = 1800) -> StreamRun:
    """Stream ``workload`` through Analyze, at real-time pace or as fast as the gateway
    takes it (the gateway's own back-pressure: MAX_VAD_LAG_S, MAX_SEGMENTS_IN_FLIGHT)."""
    import grpc

    from speech_analysis_client import audio_requests
    from speech_analysis.v1 import gateway_pb2, gateway_pb2_grpc

    run = StreamRun()
    requests = audio_requests(workload.samples, SAMPLE_RATE_HZ, gateway_pb2.StreamConfig(),
                              chunk_ms=chunk_ms, realtime=realtime)
    started = time.monotonic()
    options = [("grpc.max_receive_message_length", 64 << 20)]
    with grpc.insecure_channel(address, options=options) as channel:
        stub = gateway_pb2_grpc.SpeechAnalysisServiceStub(channel)
        try:
            for event in stub.Analyze(requests, timeout=timeout_s):
                now = time.monotonic()
                kind = event.WhichOneof("event")
                if kind == "speech_ended":
                    e = event.speech_ended
                    run.ended[e.segment_id] = (now, e.start_ms, e.end_ms)
                elif kind == "segment_result":
                    r = event.segment_result
                    run.results[r.segment_id] = (now, list(r.errors))
        except grpc.RpcError as exc:
            run.error = exc.code().name
    run.wall_s = time.monotonic() - started
    return run


def match_segments(workload: Workload, run: StreamRun) -> dict:
    """Map VAD segments to utterances by overlap; one-to-one is what the test audio intends."""
    segments = {sid: (start / 1000, end / 1000) for sid, (_, start, end) in run.ended.items()}
    per_utterance: list[list[int]] = []
    for u_start, u_end in workload.utterances:
        per_utterance.append([sid for sid, (s, e) in segments.items() if min(e, u_end) - max(s, u_start) > 0.05])
    matched = {sid for sids in per_utterance for sid in sids}
    return {
        "utterances": len(workload.utterances),
        "vad_segments": len(segments),
        "one_to_one": all(len(s) == 1 for s in per_utterance) and len(matched) == len(segments),
        "split_utterances": sum(1 for s in per_utterance if len(s) > 1),
        "missed_utterances": sum(1 for s in per_utterance if not s),
        "extra_segments": len(set(segments) - matched),
        "segment_lengths_s": [round(e - s, 2) for s, e in segments.values()],
    }


def _merge_counts(counts) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in counts:
        for key, value in item.items():
            out[key] = out.get(key, 0) + value
    return out


def percentile(values: Sequence[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if len(values) else None


def latency_stats(latencies: Sequence[float]) -> dict:
    return {"n": len(latencies), "p50_s": percentile(latencies, 50), "p95_s": percentile(latencies, 95),
            "mean_s": round(statistics.fmean(latencies), 3) if latencies else None,
            "max_s": round(max(latencies), 3) if latencies else None}


# ---------------------------------------------------------------------------------- the phases

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
                "error_codes": _merge_counts(r.error_codes() for r in runs),
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
        self.naive_started, self.naive_host = time.monotonic(), _host_busy_s()
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
        raw["host_busy_cpu_s"] = round(_host_busy_s() - self.naive_host, 2)
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
            latency[f"{length:g}"] = {"length_s": length, **latency_stats(lat),
                                      "stop_processing_s": sessions[name]["stop"]["wall_s"],
                                      "backlog_at_stop_s": round(max(
                                          stream.result_at_s - sessions[name]["stop"]["wall_s"] - stream.audio_s, 0), 3)}

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


# ------------------------------------------------------------------------------- summarising

def memory_summary(stack_memory: dict, naive: dict | None) -> dict:
    after, end = stack_memory["after_load"], stack_memory["end"]
    services = {}
    for name in SERVICES:
        a, e = after.get(name, {}), end.get(name, {})
        services[name] = {"rss_after_load_mib": a.get("VmRSS"), "peak_load_mib": a.get("VmHWM"),
                          "pss_after_load_mib": a.get("Pss"), "rss_end_mib": e.get("VmRSS"),
                          "peak_end_mib": e.get("VmHWM")}

    def total(key: str) -> float | None:
        values = [s[key] for s in services.values() if s[key] is not None]
        return round(sum(values), 1) if values else None

    out = {"services": services, "total": {key: total(key) for key in next(iter(services.values()))}}
    if naive:
        m = naive["memory"]
        out["naive"] = {"rss_after_load_mib": m["after_load"]["VmRSS"], "peak_load_mib": m["load_peak_mib"],
                        "pss_after_load_mib": m["after_load"].get("Pss"), "rss_end_mib": m["end"]["VmRSS"],
                        "peak_end_mib": m["peak_mib"]}
        out["ratio_project_to_naive"] = {
            key: round(out["total"][key] / out["naive"][key], 2)
            for key in ("rss_after_load_mib", "peak_load_mib", "pss_after_load_mib", "peak_end_mib")
            if out["total"].get(key) and out["naive"].get(key)}
    return out


def _gb(mib: float | None) -> str:
    return f"{mib * 2**20 / 1e9:.2f}" if mib is not None else "n/a"


def evaluate_targets(results: dict) -> list[dict]:
    targets = []
    memory = results["memory"]
    rss = memory["total"]["rss_after_load_mib"]
    targets.append({"target": "whole paraformer-mode stack <= 4.0 GB resident (sum of VmRSS after load)",
                    "measured": f"{_gb(rss)} GB (Pss sum {_gb(memory['total']['pss_after_load_mib'])} GB; "
                                f"sum of peaks {_gb(memory['total']['peak_end_mib'])} GB"
                                + (f"; naive {_gb(memory['naive']['rss_after_load_mib'])} GB, peak "
                                   f"{_gb(memory['naive']['peak_end_mib'])} GB)" if "naive" in memory else ")"),
                    "met": rss <= TARGET_STACK_RSS_MIB})
    lat = results["latency_stack"]
    misses = [k for k, v in lat.items() if v["p95_s"] is None or v["p95_s"] > v["target_s"]]
    targets.append({"target": "final latency <= 0.25 x length + 300 ms (p95, single stream)",
                    "measured": ", ".join(f"{k} s: p95 {v['p95_s']} s (target {v['target_s']})" for k, v in lat.items()),
                    "met": not misses})
    scaling = results["scaling_stack"]["by_length"]
    if "60" in scaling:
        ratio = scaling["60"]["ratio_to_first"]
        targets.append({"target": "compute(60 s) / compute(10 s) <= 7",
                        "measured": f"{ratio}", "met": ratio is not None and ratio <= TARGET_SCALING_RATIO})
    tp = results["throughput_stack"]
    beyond = [v for k, v in tp["by_streams"].items() if int(k) > tp["max_streams_p95_ok"]]
    adm = tp.get("admission")
    refusals_ok = adm is None or (adm["refused"] == adm["streams"] - adm["max_sessions"]
                                  and adm["p95_s"] is not None and adm["p95_s"] <= TARGET_P95_S)
    targets.append({"target": ">= 4 concurrent real-time streams with p95 <= 3 s, refusals beyond",
                    "measured": f"{tp['max_streams_p95_ok']} streams hold p95 <= 3 s; beyond, all admitted: " + (
                        ", ".join(f"{v['streams']} streams p95 {v['p95_s']} s" for v in beyond) or "not measured")
                    + ("" if adm is None else
                       f"; with MAX_SESSIONS={adm['max_sessions']}: {adm['streams']} streams, {adm['refused']} "
                       f"refused, admitted p95 {adm['p95_s']} s"),
                    "met": tp["max_streams_p95_ok"] >= TARGET_STREAMS and refusals_ok})
    return targets


def fmt(value, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _errors(figures: dict) -> str:
    codes = figures.get("error_codes") or {}
    detail = ", ".join(f"{code} {count}" for code, count in sorted(codes.items()))
    return f"{figures['segment_errors']}" + (f" ({detail})" if detail else "")


def ratio(a, b) -> str:
    return f"{a / b:.2f}" if a is not None and b else "n/a"


def markdown(results: dict) -> str:
    meta = results["meta"]
    m = meta["machine"]
    lines = [f"Run {meta['started']} ({'quick, tiny models: sanity only' if meta['quick'] else 'full-size random-weight models'}), "
             f"{meta['duration_s'] / 60:.1f} min. Machine: {m['nproc']} cores ({m['cpu_model']}), "
             f"{m['mem_total_gib']} GiB RAM; 1-min load average {meta['loadavg_start']:.1f} at start, "
             f"{meta['loadavg_end']:.1f} at end (other jobs shared the host; CPU seconds are per process, "
             f"latencies are wall clock).", ""]

    mem = results["memory"]
    lines += ["**Memory** (MiB; peak = VmHWM; the stack total sums per-process figures, so its peak is an upper bound)", "",
              "| process | resident after load | peak during load | Pss after load | resident at end | peak at end |",
              "|---|---|---|---|---|---|"]
    for name, s in list(mem["services"].items()) + [("**stack total**", mem["total"])] + (
            [("naive monolith", mem["naive"])] if "naive" in mem else []):
        lines.append(f"| {name} | {fmt(s['rss_after_load_mib'], 0)} | {fmt(s['peak_load_mib'], 0)} | "
                     f"{fmt(s['pss_after_load_mib'], 0)} | {fmt(s['rss_end_mib'], 0)} | {fmt(s['peak_end_mib'], 0)} |")
    if "ratio_project_to_naive" in mem:
        r = mem["ratio_project_to_naive"]
        lines.append(f"| project / naive | {fmt(r.get('rss_after_load_mib'))} | {fmt(r.get('peak_load_mib'))} | "
                     f"{fmt(r.get('pss_after_load_mib'))} | | {fmt(r.get('peak_end_mib'))} |")

    naive = results.get("naive") or {}
    lines += ["", "**Final-result latency after the VAD end event** (s; single stream at real time; naive: simulated "
              "timeline from its measured compute, results only after stop)", "",
              "| utterance | segments | p50 | p95 | target | met | VAD 1:1 | naive p50 | naive p95 | p50 project/naive |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for key, s in results["latency_stack"].items():
        nv = naive.get("latency", {}).get(key, {})
        lines.append(f"| {key} s | {s['n']} | {fmt(s['p50_s'])} | {fmt(s['p95_s'])} | {fmt(s['target_s'])} | "
                     f"{'yes' if s['p95_s'] is not None and s['p95_s'] <= s['target_s'] else 'no'} | "
                     f"{'yes' if s['vad']['one_to_one'] else 'no (' + str(s['vad']['vad_segments']) + ' segments for ' + str(s['vad']['utterances']) + ')'} | "
                     f"{fmt(nv.get('p50_s'))} | {fmt(nv.get('p95_s'))} | {ratio(s['p50_s'], nv.get('p50_s'))} |")

    tp = results["throughput_stack"]
    ntp = naive.get("throughput", {}).get("by_streams", {})
    lines += ["", f"**Concurrent real-time streams** ({tp['stream_audio_s']} s each, starts staggered; "
              "CPU use = stack CPU s / wall s / cores; naive simulated from its measured job times)", "",
              "| streams | p50 | p95 | refused | segment errors | stack CPU use | other jobs' CPU s | naive p95 | p95 project/naive |",
              "|---|---|---|---|---|---|---|---|---|"]
    for key, s in tp["by_streams"].items():
        nv = ntp.get(key, {})
        lines.append(f"| {key} | {fmt(s['p50_s'])} | {fmt(s['p95_s'])} | {s['refused_share']:.0%} | {_errors(s)} | "
                     f"{s['cpu']['stack_cpu_use']:.0%} | {fmt(s['cpu']['other_processes_cpu_s'], 0)} | "
                     f"{fmt(nv.get('p95_s'))} | {ratio(s['p95_s'], nv.get('p95_s'))} |")
    lines.append(f"| largest N with p95 <= 3 s | {tp['max_streams_p95_ok']} | | | | | | "
                 f"{naive.get('throughput', {}).get('max_streams_p95_ok', 'n/a')} | |")
    if (adm := tp.get("admission")) is not None:
        lines += ["", f"Admission: {adm['streams']} streams again through a gateway with "
                  f"`MAX_SESSIONS={adm['max_sessions']}`: {adm['refused']} refused at once "
                  f"({', '.join(adm['refusal_codes']) or 'none'}), the {adm['admitted']} admitted ones p50 "
                  f"{fmt(adm['p50_s'])} s, p95 {fmt(adm['p95_s'])} s, {adm['segment_errors']} segment errors."]

    sc = results["scaling_stack"]["by_length"]
    nsc = naive.get("scaling", {}).get("by_length", {})
    reference = results["scaling_stack"]["reference_s"]
    sampled = [f"{k} s: {v['retranscriptions_run']} of {v['retranscriptions_total']}" for k, v in nsc.items()
               if v.get("measured") and v.get("retranscriptions_run", 0) < v.get("retranscriptions_total", 0)]
    lines += ["", "**Scaling** (CPU seconds of all stack processes, speech-dense audio streamed as fast as the "
              "stack takes it; naive: re-transcriptions every 2 s + stop processing"
              + (f", re-transcriptions run {', '.join(sampled)}, the others interpolated" if sampled else "")
              + f"; over {results['meta']['plan']['naive_cap_s']:g} s the old server refused the recording: "
              "extrapolated figure in brackets)", "",
              f"| audio | stack CPU s | stack wall s | errors | ratio to {reference:g} s | naive CPU s | naive ratio "
              "| CPU project/naive |", "|---|---|---|---|---|---|---|---|"]
    for key, s in sc.items():
        nv = nsc.get(key, {})
        extrapolated = nv.get("cpu_s") is None and bool(nv)
        naive_cpu = fmt(nv.get("cpu_s"), 1) if not extrapolated else f"n/a ({fmt(nv.get('extrapolated_cpu_s'), 0)})"
        naive_ratio = fmt(nv.get("ratio_to_first")) if not extrapolated else f"({fmt(nv.get('ratio_to_first'))})"
        lines.append(f"| {key} s | {fmt(s['cpu_s'], 1)} | {fmt(s['wall_s'], 1)} | {_errors(s)} | "
                     f"{fmt(s['ratio_to_first'])} | {naive_cpu} | {naive_ratio} | {ratio(s['cpu_s'], nv.get('cpu_s'))} |")

    i8 = results.get("int8")
    if i8:
        f32, q8 = i8["fp32"], i8["int8"]
        lines += ["", "**ASR fp32 vs int8** (ASR_INT8=1; same reduced workload on both, back to back)", "",
                  "| | fp32 | int8 | int8/fp32 |", "|---|---|---|---|"]
        # fp32: the worker measured right after its load at the start of the run; int8: right
        # after its own load. "at end" is after the same reduced workload on each.
        asr = results["memory"]["services"]["asr"]
        rows = [("ASR resident after load, MiB", asr["rss_after_load_mib"], q8["asr_memory_after_load"]["VmRSS"]),
                ("ASR peak during load, MiB", asr["peak_load_mib"], q8["asr_memory_after_load"]["VmHWM"]),
                ("ASR resident at end, MiB", f32["asr_memory_end"]["VmRSS"], q8["asr_memory_end"]["VmRSS"]),
                ("ASR peak at end, MiB", f32["asr_memory_end"]["VmHWM"], q8["asr_memory_end"]["VmHWM"]),
                ("latency p50, all segments, s", f32["latency_all"]["p50_s"], q8["latency_all"]["p50_s"])]
        for key in f32["latency_by_length"]:
            rows.append((f"latency p50, {key} s utterances, s", f32["latency_by_length"][key]["p50_s"],
                         q8["latency_by_length"].get(key, {}).get("p50_s")))
        rows.append((f"stack CPU s for {fmt(f32['compute']['audio_s'], 0)} s fast", f32["compute"]["cpu_s"],
                     q8["compute"]["cpu_s"]))
        rows.append(("ASR worker CPU s in that run", f32["compute"]["cpu"]["per_service_cpu_s"]["asr"],
                     q8["compute"]["cpu"]["per_service_cpu_s"]["asr"]))
        for label, a, b in rows:
            digits = 0 if "MiB" in label else 2
            lines.append(f"| {label} | {fmt(a, digits)} | {fmt(b, digits)} | {ratio(b, a)} |")

    lines += ["", "**Targets**", "", "| target | measured | met |", "|---|---|---|"]
    for t in results["targets"]:
        lines.append(f"| {t['target']} | {t['measured']} | {'yes' if t['met'] else '**no**'} |")
    return "\n".join(lines) + "\n"


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    naive = results.get("naive") or {}

    ax = axes[0]
    lat = results["latency_stack"]
    xs = [v["length_s"] for v in lat.values()]
    ax.plot(xs, [v["p50_s"] for v in lat.values()], "o-", label="stack p50")
    ax.plot(xs, [v["p95_s"] for v in lat.values()], "s-", label="stack p95")
    ax.plot(xs, [latency_target_s(x) for x in xs], "k--", label="target 0.25 L + 0.3 s")
    if naive.get("latency"):
        ax.plot(xs, [naive["latency"][k]["p95_s"] for k in lat], "^:", color="tab:red", label="naive p95 (simulated)")
    ax.set_xlabel("utterance length, s")
    ax.set_ylabel("final latency after speech end, s")
    ax.set_title("Latency vs segment length (1 stream)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)

    ax = axes[1]
    tp = results["throughput_stack"]["by_streams"]
    ns = [int(k) for k in tp]
    ax.plot(ns, [v["p95_s"] if v["p95_s"] is not None else float("nan") for v in tp.values()], "s-", label="stack p95")
    if naive.get("throughput"):
        ax.plot(ns, [naive["throughput"]["by_streams"][k]["p95_s"] for k in tp], "^:", color="tab:red",
                label="naive p95 (simulated)")
    ax.axhline(TARGET_P95_S, color="k", ls="--", label="3 s")
    for n, v in zip(ns, tp.values()):
        if v["refused_share"]:
            ax.annotate(f"{v['refused_share']:.0%} refused", (n, v["p95_s"] or 0), fontsize=8)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(ns, [str(n) for n in ns])
    ax.set_xlabel("concurrent real-time streams")
    ax.set_ylabel("p95 latency, s")
    ax.set_title("p95 latency vs concurrent streams")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)

    ax = axes[2]
    mem = results["memory"]
    names = list(mem["services"]) + ["stack total"] + (["naive"] if "naive" in mem else [])
    rows = list(mem["services"].values()) + [mem["total"]] + ([mem["naive"]] if "naive" in mem else [])
    x = np.arange(len(names))
    ax.bar(x - 0.2, [r["rss_after_load_mib"] or 0 for r in rows], 0.4, label="resident after load")
    ax.bar(x + 0.2, [r["peak_end_mib"] or 0 for r in rows], 0.4, label="peak (VmHWM)")
    ax.axhline(TARGET_STACK_RSS_MIB, color="k", ls="--", label="4.0 GB target (stack total)")
    ax.set_xticks(x, names, rotation=20)
    ax.set_ylabel("MiB")
    ax.set_title("Memory per process")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")

    fig.suptitle(f"stack_bench {results['meta']['started']}" + (" (quick: tiny models)" if results["meta"]["quick"] else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def update_readme(text: str, results: dict, out_dir: Path) -> None:
    where = out_dir.relative_to(ROOT) if out_dir.is_relative_to(ROOT) else out_dir
    block = (f"{README_BEGIN}\n_Generated by `bench/stack_bench.py --readme` from `{where}/results.json` "
             f"(`{results['meta']['command']}`)._\n\n{text}{README_END}")
    current = README.read_text() if README.exists() else ""
    if README_BEGIN in current and README_END in current:
        head, rest = current.split(README_BEGIN, 1)
        tail = rest.split(README_END, 1)[1]
        README.write_text(head + block + tail)
    else:
        README.write_text(current + ("\n" if current else "") + block + "\n")


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


def write_reports(results: dict, out_dir: Path, readme: bool) -> None:
    text = markdown(results)
    (out_dir / "results.md").write_text(text)
    plot(results, out_dir / "stack_bench.png")
    if readme:
        update_readme(text, results, out_dir)
    print(text)
    print(f"results: {out_dir.relative_to(ROOT) if out_dir.is_relative_to(ROOT) else out_dir}/"
          "{results.json,results.md,stack_bench.png}")


def project_to_naive(results: dict) -> dict:
    """Project / naive for the headline figures (below 1 means the project needs less)."""
    naive = results.get("naive")
    if not naive:
        return {}
    out: dict[str, Any] = dict(results["memory"].get("ratio_project_to_naive", {}))
    out["latency_p50_by_length"] = {
        k: (round(v["p50_s"] / naive["latency"][k]["p50_s"], 3) if v["p50_s"] and naive["latency"][k]["p50_s"] else None)
        for k, v in results["latency_stack"].items()}
    out["latency_p95_by_streams"] = {
        k: (round(v["p95_s"] / naive["throughput"]["by_streams"][k]["p95_s"], 3)
            if v["p95_s"] and naive["throughput"]["by_streams"][k]["p95_s"] else None)
        for k, v in results["throughput_stack"]["by_streams"].items()}
    out["compute_by_length"] = {
        k: (round(v["cpu_s"] / naive["scaling"]["by_length"][k]["cpu_s"], 3)
            if naive["scaling"]["by_length"].get(k, {}).get("cpu_s") else None)
        for k, v in results["scaling_stack"]["by_length"].items()}
    return out


if __name__ == "__main__":
    sys.exit(main())
