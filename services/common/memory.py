"""Process memory: this process's resident figures, and handing freed heap back to the OS.

glibc keeps memory that Python/torch freed in its arenas, so without
``malloc_trim`` a worker stays at the resident size of its largest load or
model call forever. The workers trim after loading and after each model call
(a few milliseconds; measured in bench/asr_bench.py and bench/emotion_bench.py).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

__all__ = ["memory_mb", "trim_heap"]


def memory_mb() -> tuple[float, float]:
    """(resident, peak resident) of this process in MB, from /proc/self/status."""
    values = {"VmRSS": 0.0, "VmHWM": 0.0}
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                key, _, rest = line.partition(":")
                if key in values:
                    values[key] = int(rest.split()[0]) / 1024  # kB -> MB
    except OSError:
        pass
    return values["VmRSS"], values["VmHWM"]


@functools.cache
def _malloc_trim():
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc: nothing to trim
        return None


def trim_heap() -> bool:
    """Give freed heap memory back to the OS (glibc ``malloc_trim(0)``); False if unavailable."""
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False
