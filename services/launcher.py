"""Run the whole stack locally as separate processes: ``python scripts/launch.py``.

Installed (``pip install .``) the same launcher is the ``speech-analysis-launch`` command.

Uses honcho (a Procfile runner: prefixed, coloured logs per process; Ctrl-C or
SIGTERM stops them all). honcho stops the whole stack when any of its
processes exits, so each process runs under a small supervisor
(``python -m services.launcher --supervise NAME``) that restarts it when it dies, with
exponential backoff (1 s doubling to 30 s, reset after a minute of uptime),
while the others keep serving; exit status 2 (invalid settings) is not
retried. The topology (processes, ports, environment) is :data:`TOPOLOGY`;
docker-compose.yml describes the same services, and a test keeps the two
from drifting.

``METRICS_PORT=N`` (N > 0) gives each process its own port: N + its index in
:data:`TOPOLOGY` (vad N, asr N+1, emotion N+2, gateway N+3, speaker N+4).

Optional processes (:data:`OPTIONAL`: the speaker worker, for speaker labels) run
only when asked for: ``--with speaker`` adds it to the default four (``--only``
may name it too). The gateway is then pointed at it (``SPEAKER_ADDRESS``, unless
the environment sets one); without it the gateway has no speaker address and
speaker labels are off.

A watcher thread polls each process's gRPC health service (the process harness's
readiness wait, :mod:`services.common.processes`) and prints one line when the
whole stack is SERVING.

``--profile NAME`` applies ``deploy/profiles/NAME.env`` (e.g. ``small-host``:
int8 models, torch-free VAD, one torch thread per worker) to every process:
the profile overrides the topology defaults, and the shell's environment
overrides the profile.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from honcho.manager import Manager
from honcho.printer import Printer

__all__ = ["TOPOLOGY", "OPTIONAL", "PROFILES_DIR", "default_names", "process_names", "profiles", "read_profile",
           "stack_env", "supervise", "main", "run"]

ROOT = Path(__file__).resolve().parents[1]
"""Where ``services``, ``gateway`` and ``speech_analysis`` are importable from: the
checkout, or site-packages once installed. Every process runs with it as its cwd."""

PROFILES_DIR = ROOT / "deploy" / "profiles"
"""``NAME.env`` files: KEY=VALUE lines, the same files compose and systemd read."""

RESTART_BACKOFF_S = (1.0, 30.0)
"""First and longest wait before restarting a process that died."""
STABLE_AFTER_S = 60.0
"""A process that ran this long restarts after the shortest wait again."""

# name -> python module, its port variable and default port, default environment; "optional"
# processes run only when asked for (--with).
# docker-compose.yml must describe the same services/ports/environment (tests/test_deploy.py).
# OMP_WAIT_POLICY=PASSIVE: OpenMP threads sleep instead of spin-waiting between ops; the
# torch workers share a small host's cores, and spinning made calls ~1.7x slower there.
_TORCH_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}
TOPOLOGY: dict[str, dict] = {
    "vad": {"module": "services.vad.server", "port_env": "VAD_PORT", "port": 50051,
            "env": {"VAD_BACKEND": "silero", "VAD_BACKENDS": "silero", **_TORCH_ENV}},
    "asr": {"module": "services.asr.server", "port_env": "ASR_PORT", "port": 50052,
            "env": {"ASR_MODE": "paraformer", **_TORCH_ENV}},
    "emotion": {"module": "services.emotion.server", "port_env": "EMOTION_PORT", "port": 50053,
                "env": {"EMOTION_LAZY_LOAD": "0", **_TORCH_ENV}},
    "gateway": {"module": "gateway.server", "port_env": "GATEWAY_PORT", "port": 50050,
                "env": {"DEFAULT_MODE": "paraformer"}},
    # Speaker labels (off by default): the gateway asks it only when SPEAKER_ADDRESS is set.
    "speaker": {"module": "services.speaker.server", "port_env": "SPEAKER_PORT", "port": 50054,
                "env": {**_TORCH_ENV}, "optional": True},
}
OPTIONAL: tuple[str, ...] = tuple(name for name, spec in TOPOLOGY.items() if spec.get("optional"))
"""Processes that run only when asked for (``--with NAME`` or ``--only``)."""
_ADDRESS_ENV = {"vad": "VAD_ADDRESS", "asr": "ASR_ADDRESS", "emotion": "EMOTION_ADDRESS",
                "speaker": "SPEAKER_ADDRESS"}


def default_names() -> list[str]:
    """The processes a plain launch runs: every one but the optional ones."""
    return [name for name in TOPOLOGY if name not in OPTIONAL]


def profiles() -> list[str]:
    """Names of the profiles in :data:`PROFILES_DIR`."""
    return sorted(path.stem for path in PROFILES_DIR.glob("*.env"))


def read_profile(name: str) -> dict[str, str]:
    """``deploy/profiles/<name>.env`` as a dict: KEY=VALUE lines; blank lines and # comments skipped.

    The format is the common subset of systemd's EnvironmentFile= and compose's
    env_file: no quotes, no expansion, no ``export``.
    """
    path = PROFILES_DIR / f"{name}.env"
    if not path.is_file():
        raise SystemExit(f"unknown profile {name!r}: no {path} (profiles: {', '.join(profiles())})")
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.isidentifier() or not key.isupper() or value[:1] in "\"'":
            raise SystemExit(f"{path}:{number}: expected KEY=VALUE without quotes, got {line!r}")
        values[key] = value
    return values


def process_names(only: str | None = None, with_: str | None = None) -> list[str]:
    """The processes to run: ``only`` (comma-separated) or the defaults, plus the optional
    ones ``with_`` names; ValueError naming what is unknown."""
    names = [name.strip() for name in only.split(",") if name.strip()] if only else default_names()
    extra = [name.strip() for name in (with_ or "").split(",") if name.strip()]
    unknown = [name for name in names if name not in TOPOLOGY] + [name for name in extra if name not in OPTIONAL]
    if unknown:
        raise ValueError(f"unknown process {', '.join(unknown)}: --only takes {', '.join(TOPOLOGY)}; "
                         f"--with takes {', '.join(OPTIONAL)}")
    return names + [name for name in extra if name not in names]


def stack_env(environ: dict[str, str], profile: dict[str, str] | None = None,
              names: list[str] | None = None) -> dict[str, dict[str, str]]:
    """Each process's environment: topology defaults, then ``profile``, then ``environ``.

    ``names``: the processes that run (default :func:`default_names`); the gateway gets
    the address of every worker among them, and of no optional worker that is not.
    """
    running = set(default_names() if names is None else names)
    environ = {**(profile or {}), **environ}
    ports = {name: int(environ.get(spec["port_env"], spec["port"])) for name, spec in TOPOLOGY.items()}
    metrics_base = int(environ.get("METRICS_PORT", "-1") or "-1")
    envs = {}
    for index, (name, spec) in enumerate(TOPOLOGY.items()):
        env = {**spec["env"], **environ, "PYTHONUNBUFFERED": "1", spec["port_env"]: str(ports[name])}
        if metrics_base > 0:  # one port each; 0 (any free port) and -1 (off) work as they are
            env["METRICS_PORT"] = str(metrics_base + index)
        if name == "gateway":
            for worker, var in _ADDRESS_ENV.items():
                if worker in running or worker not in OPTIONAL:
                    env.setdefault(var, f"127.0.0.1:{ports[worker]}")
        envs[name] = env
    return envs


def _port(name: str, env: dict[str, str]) -> int:
    return int(env[TOPOLOGY[name]["port_env"]])


def _watch_health(names: list[str], envs: dict[str, dict[str, str]]) -> None:
    from services.common.processes import wait_until_serving  # gRPC: see main()

    for name in names:  # the stack is ready when the last of them is: the order does not matter
        wait_until_serving(f"127.0.0.1:{_port(name, envs[name])}", poll_s=0.5, check_timeout_s=1)
    port = _port("gateway", envs["gateway"]) if "gateway" in envs else 0
    sys.stdout.write(f"\n*** stack ready: gateway SERVING on 127.0.0.1:{port} "
                     f"(try: .venv/bin/python -m speech_analysis_client ../shared/audio/zh_weather.wav "
                     f"--address 127.0.0.1:{port}) ***\n\n")
    sys.stdout.flush()


def supervise(name: str) -> int:
    """Run ``name``'s module until SIGTERM/SIGINT, restarting it with backoff when it dies."""
    stopping = threading.Event()
    child: subprocess.Popen | None = None

    def stop(signum, _frame) -> None:
        stopping.set()
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    backoff_s = RESTART_BACKOFF_S[0]
    while True:
        started = time.monotonic()
        child = subprocess.Popen([sys.executable, "-m", TOPOLOGY[name]["module"]], cwd=ROOT)
        print(f"supervisor: {name} running as pid {child.pid}", flush=True)
        code = child.wait()
        if stopping.is_set():
            return 0 if code in (0, -signal.SIGTERM) else code
        if code == 2:
            print(f"supervisor: {name} exited with status 2 (invalid settings); not restarting", flush=True)
            return code
        if time.monotonic() - started >= STABLE_AFTER_S:
            backoff_s = RESTART_BACKOFF_S[0]
        print(f"supervisor: {name} exited with status {code}; restarting in {backoff_s:.0f} s", flush=True)
        if stopping.wait(backoff_s):
            return 0
        backoff_s = min(backoff_s * 2, RESTART_BACKOFF_S[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated subset of " + ",".join(TOPOLOGY))
    parser.add_argument("--with", dest="with_", metavar="NAMES",
                        help="comma-separated optional processes to run as well: " + ",".join(OPTIONAL)
                        + " (speaker labels: the gateway is pointed at the speaker worker)")
    parser.add_argument("--profile", choices=profiles(),
                        help="apply deploy/profiles/PROFILE.env (the shell's environment still wins)")
    parser.add_argument("--supervise", metavar="NAME", choices=list(TOPOLOGY),
                        help="(internal) run one process, restarting it when it dies")
    args = parser.parse_args(argv)
    if args.supervise:
        return supervise(args.supervise)
    try:
        names = process_names(args.only, args.with_)
    except ValueError as exc:
        parser.error(str(exc))
    profile = read_profile(args.profile) if args.profile else None
    if profile:
        print(f"profile {args.profile}: " + " ".join(f"{k}={v}" for k, v in profile.items()), flush=True)
    envs = stack_env(dict(os.environ), profile, names)
    manager = Manager(Printer(sys.stdout))
    for name in names:
        manager.add_process(name, f"{sys.executable} -m services.launcher --supervise {name}",
                            env=envs[name], cwd=str(ROOT))
    # The watcher's gRPC threads run while honcho forks the processes; gRPC's fork handlers
    # then abort this process now and then ("Check failed: next_worker->state == KICKED").
    # Each child execs a new interpreter at once and needs no fork support, so it is off
    # here, before gRPC is first imported (by the watcher); the children's environments
    # were built above, without it.
    os.environ["GRPC_ENABLE_FORK_SUPPORT"] = "false"
    threading.Thread(target=_watch_health, args=(names, envs), daemon=True).start()
    manager.loop()
    return manager.returncode or 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
