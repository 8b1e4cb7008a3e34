"""bench/stack_bench.py --quick end to end: real stack on tiny models, every section present and sane.

The tiny model tree comes from the session fixture (built once per suite and
cached), so the 90 s budget covers the benchmark itself, not the model build.
The naive monolith's timeline model is checked on hand-computed cases first.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tests.procs import ROOT

sys.path.insert(0, str(ROOT / "bench"))
from naive_monolith import NaiveStream, job_time_model, retranscription_ticks, simulate_server  # noqa: E402

BUDGET_S = 300  # a hang guard on a loaded 2-core host, not a speed target (that is the benchmark itself)


@pytest.fixture(scope="module")
def quick_results(tiny_models, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("stack-bench")
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "bench/stack_bench.py", "--quick", "--no-progress", "--models", str(tiny_models),
         "--out", str(out)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = proc.communicate(timeout=BUDGET_S)
    except subprocess.TimeoutExpired:
        proc.terminate()  # SIGTERM: the benchmark stops the servers it started
        stdout, stderr = proc.communicate(timeout=60)
        pytest.fail(f"stack_bench --quick took more than {BUDGET_S} s "
                    f"(1-min load average {os.getloadavg()[0]:.1f}):\n{stderr[-3000:]}")
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, f"stack_bench --quick failed:\n{stdout[-3000:]}\n{stderr[-5000:]}"
    assert elapsed < BUDGET_S
    results = json.loads((out / "results.json").read_text())
    assert (out / "results.md").read_text().startswith("Run ")
    assert (out / "stack_bench.png").stat().st_size > 10_000
    assert "**Targets**" in stdout
    return results


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and value > 0


@pytest.mark.slow
def test_memory_per_service_and_total(quick_results):
    memory = quick_results["memory"]
    for name in ("vad", "asr", "emotion", "gateway"):
        service = memory["services"][name]
        assert _positive(service["rss_after_load_mib"]) and _positive(service["peak_load_mib"])
        assert service["peak_end_mib"] >= service["rss_after_load_mib"] * 0.9
    total = memory["total"]
    assert total["rss_after_load_mib"] == pytest.approx(
        sum(memory["services"][n]["rss_after_load_mib"] for n in memory["services"]), abs=0.5)
    assert _positive(memory["naive"]["rss_after_load_mib"]) and _positive(memory["naive"]["peak_end_mib"])
    assert _positive(memory["ratio_project_to_naive"]["rss_after_load_mib"])


@pytest.mark.slow
def test_latency_for_every_length(quick_results):
    lengths = quick_results["meta"]["plan"]["lengths_s"]
    latency = quick_results["latency_stack"]
    assert sorted(float(k) for k in latency) == sorted(float(x) for x in lengths)
    for key, figures in latency.items():
        assert figures["n"] >= 1, f"no result for the {key} s utterances"
        assert 0 < figures["p50_s"] <= figures["p95_s"] < 30
        assert figures["target_s"] == pytest.approx(0.25 * float(key) + 0.3, abs=1e-3)
        assert figures["vad"]["utterances"] >= 1 and figures["vad"]["vad_segments"] >= 1
        assert figures["segment_errors"] == 0 and figures["error"] is None
        naive = quick_results["naive"]["latency"][key]
        assert _positive(naive["p50_s"]) and _positive(naive["stop_processing_s"])


@pytest.mark.slow
def test_throughput_per_stream_count(quick_results):
    throughput = quick_results["throughput_stack"]
    for n in quick_results["meta"]["plan"]["streams"]:
        figures = throughput["by_streams"][str(n)]
        assert figures["streams"] == n
        assert 0 <= figures["refused_share"] <= 1
        assert figures["p95_s"] is None or figures["p95_s"] > 0
        assert 0 < figures["cpu"]["stack_cpu_use"] <= 1.5
        assert _positive(quick_results["naive"]["throughput"]["by_streams"][str(n)]["p95_s"])
    assert throughput["max_streams_p95_ok"] in [0, *quick_results["meta"]["plan"]["streams"]]


@pytest.mark.slow
def test_scaling_ratios(quick_results):
    scaling = quick_results["scaling_stack"]["by_length"]
    lengths = quick_results["meta"]["plan"]["scaling_s"]
    assert list(scaling) == [f"{x:g}" for x in lengths]
    first = scaling[f"{lengths[0]:g}"]
    assert _positive(first["cpu_s"]) and first["ratio_to_first"] == 1.0
    for figures in scaling.values():
        assert _positive(figures["cpu_s"]) and _positive(figures["ratio_to_first"])
        assert figures["segment_errors"] == 0 and figures["segments"] >= 1
    naive = quick_results["naive"]["scaling"]["by_length"]
    assert _positive(naive[f"{lengths[0]:g}"]["cpu_s"])
    ratios = quick_results["ratios_project_to_naive"]
    assert _positive(ratios["compute_by_length"][f"{lengths[0]:g}"])
    assert all(_positive(v) for v in ratios["latency_p50_by_length"].values())


@pytest.mark.slow
def test_int8_side_by_side(quick_results):
    int8 = quick_results["int8"]
    for variant in ("fp32", "int8"):
        assert _positive(int8[variant]["asr_memory_after_load"]["VmRSS"])
        assert int8[variant]["latency_all"]["n"] >= 1
        assert _positive(int8[variant]["compute"]["cpu_s"])


@pytest.mark.slow
def test_targets_and_machine(quick_results):
    assert {t["target"].split(" ")[0] for t in quick_results["targets"]} >= {"whole", "final", ">="}
    machine = quick_results["meta"]["machine"]
    assert machine["nproc"] >= 1 and machine["mem_total_gib"] > 0 and machine["cpu_model"]


# ---- the naive monolith's timeline model (no processes) -------------------------------------

def test_ticks_every_interval_before_the_end():
    assert retranscription_ticks(10.0, 2.0) == [2.0, 4.0, 6.0, 8.0]
    assert retranscription_ticks(9.5, 2.0) == [2.0, 4.0, 6.0, 8.0]
    assert len(retranscription_ticks(60.0, 2.0)) == 29


def test_job_model_interpolates_and_extrapolates():
    model = job_time_model([(2.0, 1.0), (10.0, 5.0)])
    assert model(6.0) == pytest.approx(3.0)
    assert model(20.0) == pytest.approx(10.0)


def test_results_after_stop_when_jobs_keep_up():
    stream = NaiveStream(offset_s=0.0, audio_s=10.0, jobs=[(t, 0.5) for t in (2, 4, 6, 8)], stop_s=3.0,
                         segment_ends_s=[4.0, 9.0])
    busy = simulate_server([stream])
    assert busy == pytest.approx(5.0)
    assert stream.result_at_s == pytest.approx(13.0)
    assert stream.latencies() == pytest.approx([9.0, 4.0])


def test_backlog_delays_the_stop_processing():
    # Each re-transcription takes 3 s but arrives every 2 s: the last (tick 8) finishes at 14.
    stream = NaiveStream(offset_s=0.0, audio_s=10.0, jobs=[(t, 3.0) for t in (2, 4, 6, 8)], stop_s=1.0,
                         segment_ends_s=[9.0])
    simulate_server([stream])
    assert stream.result_at_s == pytest.approx(15.0)
    assert stream.latencies() == pytest.approx([6.0])


def test_streams_share_one_model():
    a = NaiveStream(offset_s=0.0, audio_s=4.0, jobs=[(2.0, 1.0)], stop_s=2.0, segment_ends_s=[3.0])
    b = NaiveStream(offset_s=0.0, audio_s=4.0, jobs=[(2.0, 1.0)], stop_s=2.0, segment_ends_s=[3.0])
    simulate_server([a, b])
    assert sorted([a.result_at_s, b.result_at_s]) == pytest.approx([6.0, 8.0])
