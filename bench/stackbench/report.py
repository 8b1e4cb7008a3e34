"""The benchmark's report: memory summary, targets' verdicts, ratios to the naive monolith,
``results.md`` (Markdown tables), ``stack_bench.png`` and the summary in bench/README.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .harness import SERVICES
from .plan import TARGET_P95_S, TARGET_SCALING_RATIO, TARGET_STACK_RSS_MIB, TARGET_STREAMS, latency_target_s

__all__ = ["README", "memory_summary", "evaluate_targets", "project_to_naive", "markdown", "plot",
           "update_readme", "write_reports"]

BENCH_DIR = Path(__file__).resolve().parents[1]
ROOT = BENCH_DIR.parent
README = BENCH_DIR / "README.md"
README_BEGIN = "<!-- stack_bench:begin -->"
README_END = "<!-- stack_bench:end -->"

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
