"""Process memory: resident figures and mapped files of a process (from /proc), and handing
freed heap back to the OS.

glibc keeps memory that Python/torch freed in its arenas, so without
``malloc_trim`` a worker stays at the resident size of its largest load or
model call forever. The workers trim after loading and after each model call
(a few milliseconds; measured in bench/asr_bench.py and bench/emotion_bench.py).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

__all__ = ["libc_function", "mapped_files", "memory_mb", "status_mib", "trim_heap"]


def status_mib(pid: int | str = "self", fields: tuple[str, ...] = ("VmRSS", "VmHWM")) -> dict[str, float]:
    """Memory fields of ``/proc/<pid>/status`` (kB there) in MiB; absent fields are left out.

    Read by hand: psutil has no peak resident size (VmHWM), which is what the
    load-peak figures need."""
    values: dict[str, float] = {}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                key, _, rest = line.partition(":")
                if key in fields:
                    values[key] = int(rest.split()[0]) / 1024
    except OSError:
        pass
    return values


def memory_mb() -> tuple[float, float]:
    """(resident, peak resident) of this process in MiB (0 where /proc is unavailable)."""
    values = status_mib()
    return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)


def mapped_files(pid: int | str = "self") -> set[str]:
    """Every file mapped into the process (shared libraries included), from ``/proc/<pid>/maps``."""
    with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as maps:
        return {fields[5].strip() for line in maps if len(fields := line.split(maxsplit=5)) == 6}


@functools.cache
def libc_function(name: str):
    """The C library's function ``name`` (errno kept), or None where there is none (not glibc)."""
    library = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(library, use_errno=True), name) if library else None
    except (OSError, AttributeError):
        return None


def trim_heap() -> bool:
    """Give freed heap memory back to the OS (glibc ``malloc_trim(0)``); False if unavailable."""
    trim = libc_function("malloc_trim")
    return bool(trim(0)) if trim is not None else False
