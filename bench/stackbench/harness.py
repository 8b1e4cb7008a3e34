"""The stack under test, as real processes, and a meter of the CPU it uses.

:class:`Stack` starts the four processes through the process harness
(:mod:`services.common.processes`: free ports, health SERVING) and reads their
memory and CPU from ``/proc``; :class:`CpuMeter` measures a phase's CPU seconds:
the stack's, this process's and everything else's on the host.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Sequence

import procstat
from services.common.processes import start_server, wait_for_serving

__all__ = ["SERVICES", "Stack", "CpuMeter", "host_busy_s"]

SERVICES = ("vad", "asr", "emotion", "gateway")

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
        self.host = host_busy_s()
        return self

    def __exit__(self, *exc) -> None:
        self.wall_s = time.monotonic() - self.wall
        after = self.stack.cpu()
        self.per_service = {name: round(after[name] - self.stack_cpu.get(name, after[name]), 3) for name in after}
        self.stack_s = sum(self.per_service.values())
        self.own_s = procstat.cpu_seconds("self") - self.own
        self.other_s = max(host_busy_s() - self.host - self.stack_s - self.own_s, 0.0)

    def summary(self) -> dict:
        cores = procstat.machine_info()["nproc"]
        return {"wall_s": round(self.wall_s, 2), "stack_cpu_s": round(self.stack_s, 2),
                "per_service_cpu_s": self.per_service,
                "stack_cpu_use": round(self.stack_s / self.wall_s / cores, 3),
                "bench_client_cpu_s": round(self.own_s, 2),
                "other_processes_cpu_s": round(self.other_s, 2),
                "loadavg_1min": round(os.getloadavg()[0], 2)}


def host_busy_s() -> float:
    """Busy CPU seconds of the whole host (all processes) from /proc/stat."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in fields]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    busy = sum(values[:8]) - idle  # user nice system idle iowait irq softirq steal
    return busy / procstat.CLOCK_TICKS_PER_S
