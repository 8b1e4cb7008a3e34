"""scripts/launch.py: the whole stack as separate processes under honcho, on tiny models."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest

from speech_analysis_client import analyze
from speech_analysis.v1 import gateway_pb2_grpc
from tests.conftest import read_clip
from services.common.health import serving_status
from services.common.processes import wait_until_serving
from services.common.memory import mapped_files
from services.launcher import TOPOLOGY, default_names, read_profile
from tests.procs import ROOT, free_port


class Launcher:
    """``scripts/launch.py`` as a subprocess whose output a thread collects, so every wait
    has a real deadline (a launcher that hangs silently fails the test with its output)."""

    def __init__(self, args: list[str], env: dict[str, str]):
        self.proc = subprocess.Popen([sys.executable, "scripts/launch.py", *args], cwd=ROOT, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True)
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def output(self) -> str:
        with self._changed:
            return "".join(self.lines)

    def wait_for(self, pattern: str, timeout_s: float, start: int = 0) -> re.Match:
        """The first match of ``pattern`` in a line from index ``start`` on."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                for line in self.lines[start:]:
                    if match := re.search(pattern, line):
                        return match
                start = len(self.lines)
                remaining = deadline - time.monotonic()
                more_to_come = self.proc.poll() is None or self._reader.is_alive()
                assert remaining > 0 and more_to_come, (
                    f"no {pattern!r} within {timeout_s} s:\n" + "".join(self.lines[-60:]))
                self._changed.wait(min(remaining, 1.0))

    def servers(self) -> dict[str, int]:
        """The running server processes under this launcher: module name -> pid (from /proc)."""
        children: dict[int, list[int]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                pid, ppid = int(stat.parent.name), int(stat.read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue  # gone meanwhile
            children.setdefault(ppid, []).append(pid)
        found, pending = {}, [self.proc.pid]
        while pending:
            pid = pending.pop()
            pending += children.get(pid, [])
            try:
                argv = (Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"-m" in argv and (module := argv[argv.index(b"-m") + 1].decode()).endswith(".server"):
                found[module] = pid
        return found

    def interrupt(self) -> None:
        self.proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        self.proc.wait(60)

    def stop(self) -> None:
        """Stop a launcher still running after a failed test."""
        if self.proc.poll() is None:
            # SIGTERM lets honcho stop its children (each runs in its own process group,
            # so killing honcho outright would orphan them); SIGKILL only as a last resort.
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


def test_launcher_starts_serves_and_stops_everything(model_env):
    """The default four and, with ``--with speaker``, the optional speaker worker."""
    ports = {name: free_port() for name in ("VAD_PORT", "ASR_PORT", "EMOTION_PORT", "GATEWAY_PORT", "SPEAKER_PORT")}
    env = {**os.environ, **model_env, **{k: str(v) for k, v in ports.items()}, "PYTHONUNBUFFERED": "1"}
    launcher = Launcher(["--with", "speaker"], env)
    try:
        launcher.wait_for("stack ready", 240)  # every process SERVING, the speaker worker's included
        lines = list(launcher.lines)
        # Logs are prefixed per process; the models are the random-weight ones, and they say so.
        for name in ("vad", "asr", "emotion", "gateway", "speaker"):
            assert any(name in line.split("|")[0] for line in lines if "|" in line), (name, lines)
        assert any("random" in line.lower() and "weight" in line.lower() for line in lines)
        samples, rate = read_clip("zh_single", dtype="int16")
        with grpc.insecure_channel(f"127.0.0.1:{ports['GATEWAY_PORT']}") as channel:
            events = list(analyze(gateway_pb2_grpc.SpeechAnalysisServiceStub(channel), samples, rate, timeout=60))
        (result,) = [e.segment_result for e in events if e.WhichOneof("event") == "segment_result"]
        assert result.text and result.emotions and result.random_weights and not result.errors
        launcher.interrupt()
    finally:
        launcher.stop()
    launcher.wait_for("stopped", 10, start=len(lines))
    # Every process was stopped, none left listening.
    for port in ports.values():
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            try:
                grpc.channel_ready_future(channel).result(timeout=1)
                raise AssertionError(f"port {port} still serving after Ctrl-C")
            except grpc.FutureTimeoutError:
                pass


def test_launcher_restarts_a_dead_worker_and_gives_each_process_a_metrics_port():
    import urllib.request

    from grpc_health.v1 import health_pb2

    ports = {"VAD_PORT": free_port(), "GATEWAY_PORT": free_port()}
    metrics_base = free_port()  # vad: base, gateway: base + 3
    env = {**os.environ, **{k: str(v) for k, v in ports.items()}, "PYTHONUNBUFFERED": "1",
           "METRICS_PORT": str(metrics_base), "ASR_ADDRESS": "127.0.0.1:9", "EMOTION_ADDRESS": "127.0.0.1:9"}
    launcher = Launcher(["--only", "vad,gateway"], env)

    def serving(port: int, deadline_s: float) -> None:
        alive = launcher.proc.poll
        assert wait_until_serving(f"127.0.0.1:{port}", service="liveness" if port == ports["GATEWAY_PORT"] else "",
                                  deadline=time.monotonic() + deadline_s, alive=lambda: alive() is None), \
            launcher.output()

    try:
        first = int(launcher.wait_for(r"supervisor: vad running as pid (\d+)", 60).group(1))
        serving(ports["VAD_PORT"], 120)
        serving(ports["GATEWAY_PORT"], 60)  # its metrics server starts before its gRPC server
        # Each process has its own metrics port (one shared port would kill the stack).
        vad_metrics = urllib.request.urlopen(f"http://127.0.0.1:{metrics_base}/metrics", timeout=5).read()
        gateway_metrics = urllib.request.urlopen(f"http://127.0.0.1:{metrics_base + 3}/metrics", timeout=5).read()
        assert b'\nspeech_models_info{' in vad_metrics, (metrics_base, launcher.output())
        assert b"\nspeech_worker_serving{" not in vad_metrics
        assert b"\nspeech_worker_serving{" in gateway_metrics

        seen = len(launcher.lines)
        os.kill(first, signal.SIGKILL)  # the VAD worker dies
        second = int(launcher.wait_for(r"supervisor: vad running as pid (\d+)", 30, start=seen).group(1))
        assert second != first
        serving(ports["VAD_PORT"], 120)
        # The gateway kept running all along and sees the VAD again.
        gateway = f"127.0.0.1:{ports['GATEWAY_PORT']}"
        assert serving_status(gateway, "liveness") == health_pb2.HealthCheckResponse.SERVING
        wait_until_serving(gateway, "vad", deadline=time.monotonic() + 30)
        launcher.interrupt()
    finally:
        launcher.stop()
    for port in ports.values():
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            with pytest.raises(grpc.FutureTimeoutError):
                grpc.channel_ready_future(channel).result(timeout=1)


def test_speaker_worker_runs_only_when_asked_for_and_the_gateway_is_pointed_at_it():
    from services import launcher as launch

    assert launch.process_names() == ["vad", "asr", "emotion", "gateway"]  # speaker labels are off by default
    assert launch.process_names(with_="speaker") == ["vad", "asr", "emotion", "gateway", "speaker"]
    assert launch.process_names(only="speaker") == ["speaker"]
    with pytest.raises(ValueError, match="--with takes speaker"):
        launch.process_names(with_="asr")  # not optional: it runs anyway
    assert "SPEAKER_ADDRESS" not in launch.stack_env({})["gateway"]  # no address: no speaker labels
    with_speaker = launch.process_names(with_="speaker")
    envs = launch.stack_env({"SPEAKER_PORT": "50154", "METRICS_PORT": "9100"}, names=with_speaker)
    assert envs["gateway"]["SPEAKER_ADDRESS"] == "127.0.0.1:50154"
    assert envs["speaker"]["SPEAKER_PORT"] == "50154" and envs["speaker"]["METRICS_PORT"] == "9104"
    assert envs["speaker"]["OMP_WAIT_POLICY"] == "PASSIVE"
    elsewhere = launch.stack_env({"SPEAKER_ADDRESS": "10.0.0.5:50054"}, names=["gateway"])
    assert elsewhere["gateway"]["SPEAKER_ADDRESS"] == "10.0.0.5:50054"  # the environment still wins
    done = subprocess.run([sys.executable, "scripts/launch.py", "--with", "diarizer"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "unknown process diarizer" in done.stderr


# ---- profiles (deploy/profiles/*.env) ---------------------------------------------------------

def _known_variables() -> set[str]:
    import dataclasses

    from services.common import settings

    classes = (settings.ModelSettings, settings.ServerSettings, settings.VadSettings, settings.AsrSettings,
               settings.EmotionSettings, settings.SpeakerSettings, settings.GatewaySettings)
    return {f.metadata["env"] for cls in classes for f in dataclasses.fields(cls)} | {
        "OMP_WAIT_POLICY", "MALLOC_ARENA_MAX"}  # read by OpenMP and glibc, not by settings.py


def test_profiles_name_only_real_settings_and_parse_like_systemd_would():
    from services import launcher as launch

    assert "small-host" in launch.profiles()
    for name in launch.profiles():
        profile = launch.read_profile(name)
        assert profile and set(profile) <= _known_variables(), set(profile) - _known_variables()
    small = launch.read_profile("small-host")
    assert small["ASR_INT8"] == small["EMOTION_INT8"] == "1" and small["VAD_BACKENDS"] == "silero"


def test_profile_overrides_defaults_and_the_environment_overrides_the_profile():
    from services import launcher as launch

    profile = launch.read_profile("small-host")
    envs = launch.stack_env({"EMOTION_INT8": "0"}, profile)
    assert envs["asr"]["ASR_INT8"] == "1" and envs["asr"]["TORCH_THREADS"] == profile["TORCH_THREADS"]
    assert envs["emotion"]["EMOTION_INT8"] == "0"
    assert envs["vad"]["VAD_BACKENDS"] == "silero"
    assert launch.stack_env({})["asr"].get("ASR_INT8") is None  # no profile: the settings' defaults


def test_bad_profile_line_is_refused(tmp_path, monkeypatch):
    import pytest

    from services import launcher as launch

    (tmp_path / "broken.env").write_text('ASR_INT8="1"\n')
    monkeypatch.setattr(launch, "PROFILES_DIR", tmp_path)
    with pytest.raises(SystemExit, match="without quotes"):
        launch.read_profile("broken")


def test_launcher_applies_the_small_host_profile(model_env, emotion_onnx_dir):
    """--profile small-host reaches every process: int8 ASR, int8 emotion on onnxruntime,
    torch-free VAD."""
    onnx_dir = emotion_onnx_dir  # the profile's EMOTION_RUNTIME=onnx needs the export
    ports = {name: free_port() for name in ("VAD_PORT", "ASR_PORT", "EMOTION_PORT", "GATEWAY_PORT")}
    env = {**os.environ, **model_env, **{k: str(v) for k, v in ports.items()}, "PYTHONUNBUFFERED": "1",
           "LOG_LEVEL": "INFO", "EMOTION_ONNX_DIR": str(onnx_dir)}
    for key in ("ASR_INT8", "EMOTION_INT8", "EMOTION_RUNTIME", "VAD_BACKENDS", "TORCH_THREADS", "MAX_SESSIONS"):
        env.pop(key, None)
    launcher = Launcher(["--profile", "small-host"], env)
    try:
        launcher.wait_for("stack ready", 240)
        assert "profile small-host:" in launcher.output()
        servers = launcher.servers()
        assert set(servers) == {TOPOLOGY[name]["module"] for name in default_names()}, servers  # no optional ones
        profile = read_profile("small-host")
        for module, pid in servers.items():  # every process got the profile, the shell's values removed
            environ = dict(item.split(b"=", 1) for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
                           if b"=" in item)
            for key in ("ASR_INT8", "EMOTION_INT8", "EMOTION_RUNTIME", "VAD_BACKENDS", "TORCH_THREADS"):
                assert environ.get(key.encode()) == profile[key].encode(), (module, key)
        # and the processes act on it: torch-free VAD, emotion on onnxruntime without torch
        vad_files, emotion_files = (mapped_files(servers[f"services.{name}.server"]) for name in ("vad", "emotion"))
        assert not any("libtorch" in f for f in vad_files | emotion_files)
        assert any("onnxruntime" in f for f in emotion_files)
        samples, rate = read_clip("zh_single", dtype="int16")
        with grpc.insecure_channel(f"127.0.0.1:{ports['GATEWAY_PORT']}") as channel:
            events = list(analyze(gateway_pb2_grpc.SpeechAnalysisServiceStub(channel), samples, rate, timeout=60))
        (result,) = [e.segment_result for e in events if e.WhichOneof("event") == "segment_result"]
        assert result.text and result.emotions and not result.errors
    finally:
        launcher.stop()
