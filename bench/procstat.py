"""Process memory and CPU figures from /proc, shared by the benchmarks.

Everything here reads the kernel's own accounting, so it works for any
process (a worker started by the benchmark, or the benchmark itself) and costs
nothing while the measured process runs:

* memory from ``/proc/<pid>/status``: ``VmRSS`` (resident now = RssAnon +
  RssFile + RssShmem), ``VmHWM`` (peak resident since start, or since the last
  :func:`reset_peak`), and ``/proc/<pid>/smaps_rollup``'s ``Pss`` (resident
  with shared pages divided among the processes sharing them, so summing Pss
  over a group of processes does not count shared libraries twice);
* CPU from ``/proc/<pid>/stat``: user + system time of all the process's
  threads, in seconds. On a host where other jobs compete for the cores, CPU
  seconds are the figure to trust; wall time also counts waiting.

Usage::

    before = cpu_seconds(pid)
    ...
    used = cpu_seconds(pid) - before
    memory_mib(pid)["VmRSS"], machine_info()["cpu_model"]
"""

from __future__ import annotations

import os
import platform
import re
import sys
from pathlib import Path
from typing import Iterable

_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:  # benchmarks import this module by bare name from bench/
    sys.path.insert(0, _ROOT)

from services.common.memory import status_mib  # noqa: E402  (the one /proc/<pid>/status reader)

__all__ = [
    "CLOCK_TICKS_PER_S",
    "MEMORY_FIELDS",
    "memory_mib",
    "pss_mib",
    "reset_peak",
    "cpu_seconds",
    "group_cpu_seconds",
    "machine_info",
    "memory_target",
]

CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
MEMORY_FIELDS = ("VmRSS", "VmHWM", "RssAnon", "RssFile")


def memory_mib(pid: int | str = "self", fields: Iterable[str] = MEMORY_FIELDS) -> dict[str, float]:
    """``/proc/<pid>/status`` memory fields, in MiB (one decimal)."""
    return {name: round(value, 1) for name, value in status_mib(pid, tuple(fields)).items()}


def pss_mib(pid: int | str = "self") -> float | None:
    """Proportional set size in MiB (None where smaps_rollup is unavailable)."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    match = re.search(r"^Pss:\s+(\d+) kB", text, re.M)
    return round(int(match.group(1)) / 1024, 1) if match else None


def reset_peak(pid: int | str = "self") -> None:
    """Set VmHWM back to the current VmRSS (needs permission to write clear_refs)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU seconds of all threads of ``pid`` so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may contain spaces; fields after the closing ")" are fixed.
    fields = stat[stat.rindex(")") + 2:].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / CLOCK_TICKS_PER_S


def group_cpu_seconds(pids: Iterable[int]) -> dict[int, float]:
    """:func:`cpu_seconds` of several processes, read back to back."""
    return {pid: cpu_seconds(pid) for pid in pids}


def machine_info() -> dict[str, object]:
    """What the figures were measured on: cores, memory, CPU model, load."""
    cpu_model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_total_kib = 0
    try:
        match = re.search(r"^MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
        mem_total_kib = int(match.group(1)) if match else 0
    except OSError:
        pass
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "mem_total_gib": round(mem_total_kib / 1024 / 1024, 1),
        "cpu_model": cpu_model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg": list(os.getloadavg()),
    }


def memory_target(value_mib: float, target: float, unit: str) -> tuple[float, float, str]:
    """A memory figure against a target stated in decimal ``unit`` ("MB" or "GB").

    Targets written as "600 MB" may mean MiB (the issues' own naive figures match
    MiB measurements), so both readings are returned: (target in MiB read as
    decimal, target in MiB read as binary, verdict).
    """
    scale = {"MB": 1e6, "GB": 1e9}[unit]
    strict = target * scale / 2**20
    binary = target * {"MB": 1, "GB": 1024}[unit]  # MiB
    binary_unit = {"MB": "MiB", "GB": "GiB"}[unit]
    if value_mib <= strict:
        verdict = "met"
    elif value_mib <= binary:
        verdict = f"met as {binary_unit}, missed as {unit}"
    else:
        verdict = "MISSED"
    return strict, binary, verdict
