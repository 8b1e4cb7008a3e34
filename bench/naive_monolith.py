"""The naive monolith: what the service looked like before the split, as a baseline.

One process loads every model the way the release READMEs show it:

* ``funasr.AutoModel(model=<paraformer dir>, vad_model=<fsmn dir>,
  punc_model=<ct-punc dir>, device="cpu", ncpu=2, disable_update=True)``;
* SpeechBrain ``foreign_class(...)`` for ``emotion-recognition-wav2vec2-IEMOCAP``
  with only the overrides needed offline (``wav2vec2_hub`` -> the local
  ``wav2vec2-base`` directory, ``pretrained_path`` -> the model directory).

and serves a recording like the older server did:

* while recording, every ``interval_s`` (2 s) of audio, the *whole* buffer so
  far is transcribed again (``generate`` = FSMN-VAD + Paraformer + CT-punc on
  the buffer): the job for buffer length ``t`` costs about ``c * t``, so a
  recording of length ``T`` costs about ``c * T**2 / (2 * interval_s)``;
* at stop: VAD + ASR + punctuation on the full recording, then emotion
  (``classify_batch``) on each VAD segment. Results exist only now.
* recordings longer than ``cap_s`` (60 s) were refused.

This module runs the compute for real, back to back (not paced), in one
process, and records each job's wall and CPU time; :func:`simulate_server`
then replays the timeline at real-time pace from those measured times (see
its docstring for the queueing model). That separates "what it costs" (run
here) from "when the user would have seen it" (simulated), so the naive
baseline needs neither real-time waits nor threads.

Usage (normally driven by ``bench/stack_bench.py``, which writes the job file)::

    .venv/bin/python bench/naive_monolith.py --project-root ROOT --model-cache-dir DIR \\
        --job job.json --out naive.json

``job.json``: ``{"interval_s": 2.0, "cap_s": 60.0, "sessions": [{"name": ...,
"wav": path, "retranscribe": true, "measured_ticks": 8}, ...]}``. With
``measured_ticks`` only that many re-transcriptions, spread evenly over the
recording, are run and the others interpolated (a 60 s recording needs 29 of
them, 930 s of audio through the pipeline; their cost is close to linear in the
buffer length). Sessions with ``retranscribe`` false only measure the stop
processing (their re-transcription times are then modelled from a session that
measured them, see :func:`job_time_model`).
"""

from __future__ import annotations

import argparse
import bisect
import json
import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

__all__ = [
    "NaiveStream",
    "simulate_server",
    "job_time_model",
    "retranscription_ticks",
    "sample_ticks",
    "main",
]

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_RATE_HZ = 16_000
log = logging.getLogger("naive_monolith")


# ------------------------------------------------------------------------ timeline model (pure)

def retranscription_ticks(audio_s: float, interval_s: float) -> list[float]:
    """Buffer lengths (= arrival times) at which the old server re-transcribed while recording."""
    ticks = []
    tick = interval_s
    while tick < audio_s - 1e-9:
        ticks.append(round(tick, 6))
        tick += interval_s
    return ticks


def job_time_model(measured: Sequence[tuple[float, float]]) -> Callable[[float], float]:
    """Seconds a re-transcription of a ``t``-second buffer takes, from measured ``(t, seconds)``.

    Linear interpolation between measured buffer lengths; outside them a
    least-squares line through all points (clamped at 0).
    """
    points = sorted(measured)
    if not points:
        return lambda t: 0.0
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    n = len(points)
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    var = sum((x - mean_x) ** 2 for x in xs)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / var if var else 0.0
    intercept = mean_y - slope * mean_x

    def model(t: float) -> float:
        if n >= 2 and xs[0] <= t <= xs[-1]:
            i = min(bisect.bisect_left(xs, t), n - 1)
            if xs[i] == t or i == 0:
                return ys[i]
            x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
            return y0 + (y1 - y0) * (t - x0) / (x1 - x0)
        return max(intercept + slope * t, 0.0)

    model.slope, model.intercept = slope, intercept  # type: ignore[attr-defined]
    return model


@dataclass
class NaiveStream:
    """One recording as the old server saw it (times in seconds of that stream)."""

    offset_s: float
    """When the recording started, on the shared clock."""
    audio_s: float
    jobs: list[tuple[float, float]]
    """(arrival time in the stream = buffer length, duration) of each re-transcription."""
    stop_s: float
    """Duration of the stop processing (VAD + ASR + punc + emotion on the whole recording)."""
    segment_ends_s: list[float]
    """End of each speech segment, in the stream."""
    result_at_s: float = field(default=0.0, init=False)
    """Filled by :func:`simulate_server`: when the results appeared, on the shared clock."""

    def latencies(self) -> list[float]:
        return [self.result_at_s - (self.offset_s + end) for end in self.segment_ends_s]


def simulate_server(streams: Sequence[NaiveStream]) -> float:
    """Replay the old server's timeline; fills ``result_at_s``; returns the busy time.

    Model: one model instance, one job at a time (each job already uses both
    cores through torch threads, so running two at once would not finish
    either sooner), first come first served by arrival time. A stream's job
    arrives when its 2-s tick's audio has arrived; a job waiting behind a
    slower one is *not* dropped (the handler consumed audio and transcribed in
    turn, so a backlog grows once one job takes longer than 2 s). The stop job
    arrives at the end of the recording; results appear when it finishes.
    """
    queue: list[tuple[float, int, int, float]] = []  # (arrival, order, stream index, duration)
    order = 0
    for index, stream in enumerate(streams):
        for tick, duration in stream.jobs:
            queue.append((stream.offset_s + tick, order, index, duration))
            order += 1
        queue.append((stream.offset_s + stream.audio_s, order, index, stream.stop_s))
        order += 1
    queue.sort()
    clock = 0.0
    busy = 0.0
    last_job: dict[int, float] = {}
    for arrival, _order, index, duration in queue:
        clock = max(clock, arrival)
        clock += duration
        busy += duration
        last_job[index] = clock
    for index, stream in enumerate(streams):
        stream.result_at_s = last_job[index]
    return busy


# ------------------------------------------------------------------------------ measured side

def _memory() -> dict[str, float]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from procstat import memory_mib, pss_mib

    return {**memory_mib("self"), "Pss": pss_mib("self")}


def _cpu() -> float:
    from procstat import cpu_seconds

    return cpu_seconds("self")


def _timed(fn):
    wall, cpu = time.perf_counter(), _cpu()
    value = fn()
    return value, time.perf_counter() - wall, _cpu() - cpu


def load_models(project_root: Path, model_cache_dir: Path, threads: int):
    """The naive loading code: one AutoModel pipeline + foreign_class. Returns (asr, emotion)."""
    from services.common.model_paths import resolve_models

    layout = resolve_models(project_root, str(model_cache_dir))
    paraformer = layout.get("paraformer").path
    fsmn = layout.get("fsmn_vad").path
    punc = layout.get("ct_punc").path
    emotion_dir = layout.get("speechbrain_emotion").path

    from funasr import AutoModel

    asr = AutoModel(model=str(paraformer), vad_model=str(fsmn), punc_model=str(punc),
                    device="cpu", ncpu=threads, disable_update=True, disable_pbar=True)

    from speechbrain.inference.interfaces import foreign_class

    classifier = foreign_class(
        source=str(emotion_dir), pymodule_file="custom_interface.py",
        classname="CustomEncoderWav2vec2Classifier", savedir=tempfile.mkdtemp(prefix="naive-emotion-"),
        overrides={"wav2vec2_hub": str(emotion_dir / "wav2vec2-base"), "pretrained_path": str(emotion_dir)})
    return asr, classifier


class NaiveServer:
    """The old request handling, minus the network: transcribe(buffer) and stop(recording)."""

    def __init__(self, asr, classifier):
        self.asr = asr
        self.classifier = classifier

    def transcribe(self, samples) -> str:
        result = self.asr.generate(input=samples)
        return result[0]["text"] if result else ""

    def stop(self, samples) -> dict:
        import torch

        timings = {}
        vad, timings["vad_wall_s"], timings["vad_cpu_s"] = _timed(lambda: self.asr.inference(
            samples, model=self.asr.vad_model, kwargs=self.asr.vad_kwargs))
        segments = [list(map(int, seg)) for seg in (vad[0]["value"] if vad else [])]
        text, timings["asr_wall_s"], timings["asr_cpu_s"] = _timed(lambda: self.transcribe(samples))

        def emotions():
            labels = []
            with torch.inference_mode():
                for start_ms, end_ms in segments:
                    piece = samples[start_ms * SAMPLE_RATE_HZ // 1000: end_ms * SAMPLE_RATE_HZ // 1000]
                    if piece.size >= SAMPLE_RATE_HZ // 10:
                        labels.append(self.classifier.classify_batch(torch.from_numpy(piece)[None])[3][0])
            return labels

        labels, timings["emotion_wall_s"], timings["emotion_cpu_s"] = _timed(emotions)
        return {"segments_ms": segments, "text_chars": len(text), "labels": labels, **timings}


def sample_ticks(ticks: Sequence[float], count: int | None) -> list[float]:
    """``count`` ticks spread evenly over ``ticks`` (first and last included); all when None."""
    if count is None or count >= len(ticks):
        return list(ticks)
    picks = {round(i * (len(ticks) - 1) / (count - 1)) for i in range(count)} if count > 1 else {len(ticks) - 1}
    return [ticks[i] for i in sorted(picks)]


def run_session(server: NaiveServer, samples, interval_s: float, retranscribe: bool,
                measured_ticks: int | None = None) -> dict:
    """Measure one recording: its re-transcriptions (all, or ``measured_ticks`` of them spread
    over the recording, the rest interpolated) and the stop processing."""
    from procstat import reset_peak

    audio_s = samples.size / SAMPLE_RATE_HZ
    reset_peak("self")
    cpu_start = _cpu()
    jobs = []
    ticks = retranscription_ticks(audio_s, interval_s) if retranscribe else []
    for tick in sample_ticks(ticks, measured_ticks):
        _, wall, cpu = _timed(lambda: server.transcribe(samples[: int(tick * SAMPLE_RATE_HZ)]))  # noqa: B023 (called at once)
        jobs.append({"buffer_s": tick, "wall_s": round(wall, 4), "cpu_s": round(cpu, 4)})
    stop, wall, cpu = _timed(lambda: server.stop(samples))
    out = {
        "audio_s": round(audio_s, 3),
        "ticks": len(ticks),
        "retranscriptions": jobs,
        "stop": {"wall_s": round(wall, 4), "cpu_s": round(cpu, 4),
                 **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in stop.items()}},
        "cpu_s_measured": round(_cpu() - cpu_start, 3),
        "memory_end": _memory(),
    }
    # Compute of the whole session: every tick's job (measured, or interpolated between the
    # measured buffer lengths) plus the stop processing.
    cpu_model = job_time_model([(j["buffer_s"], j["cpu_s"]) for j in jobs])
    measured = {j["buffer_s"]: j["cpu_s"] for j in jobs}
    out["cpu_s_total"] = round(sum(measured.get(t, cpu_model(t)) for t in ticks) + out["stop"]["cpu_s"], 3)
    out["all_ticks_measured"] = len(jobs) == len(ticks)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project-root", type=Path, required=True,
                        help="directory whose pretrained_models/ holds the emotion model")
    parser.add_argument("--model-cache-dir", type=Path, required=True)
    parser.add_argument("--job", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):  # no network here; never ask a hub
        os.environ[key] = "1"
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import numpy as np
    import soundfile as sf
    import torch

    torch.set_num_threads(args.threads)
    job = json.loads(args.job.read_text())
    out: dict = {"threads": args.threads, "interval_s": job["interval_s"], "cap_s": job["cap_s"],
                 "memory_start": _memory()}

    (asr, classifier), wall, cpu = _timed(lambda: load_models(args.project_root, args.model_cache_dir,
                                                             args.threads))
    out["load"] = {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2)}
    out["memory_after_load"] = _memory()  # VmHWM here = peak while loading
    server = NaiveServer(asr, classifier)
    # Warm up on real speech (the first 4 s of the first recording), so that VAD, ASR,
    # punctuation and emotion have all run once: their first calls cost several times a
    # normal one (lazy initialisation), and the workers warm up the same way before SERVING.
    first, _ = sf.read(job["sessions"][0]["wav"], dtype="float32", frames=4 * SAMPLE_RATE_HZ)
    warm, wall, cpu = _timed(lambda: server.stop(np.ascontiguousarray(first)))
    out["warmup"] = {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "segments": len(warm["segments_ms"])}
    out["memory_after_warmup"] = _memory()
    out["sessions"] = {}
    for session in job["sessions"]:
        samples, rate = sf.read(session["wav"], dtype="float32")
        assert rate == SAMPLE_RATE_HZ and samples.ndim == 1, session["wav"]
        if samples.size / SAMPLE_RATE_HZ > job["cap_s"] + 1e-6:
            out["sessions"][session["name"]] = {"audio_s": samples.size / SAMPLE_RATE_HZ, "refused": True}
            continue
        out["sessions"][session["name"]] = run_session(server, samples, job["interval_s"],
                                                       session.get("retranscribe", False),
                                                       session.get("measured_ticks"))
        print(f"naive: {session['name']} done", file=sys.stderr, flush=True)
    out["memory_end"] = _memory()
    args.out.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
