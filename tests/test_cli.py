"""The command-line client as a real subprocess against the real stack (tiny models)."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import socket
import struct
import subprocess
import sys
import termios
import time

import soundfile as sf

from speech_analysis_client.cli import DEFAULT_PORT, with_default_port
from tests.conftest import SHARED_AUDIO, read_clip
from tests.procs import ROOT, start_server


def run_cli(*args: str, timeout: float = 120, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "speech_analysis_client", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})}, **kwargs)


def test_json_mode_streams_every_event(stack, manifest):
    clip = manifest["zh_weather"]
    done = run_cli(str(SHARED_AUDIO / clip["file"]), "--address", stack.gateway.address, "--fast", "--json")
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    results = [e["segmentResult"] for e in events if "segmentResult" in e]
    assert len(results) == len(clip["segments"])
    assert all(r["text"] and r["emotions"][0]["label"] in {"neu", "ang", "hap", "sad"} for r in results)
    assert "summary" in events[-1] and events[-1]["summary"]["segmentCount"] == len(clip["segments"])


def test_human_mode_other_format_and_rate(stack, tmp_path):
    samples, rate = read_clip("zh_service")
    path = tmp_path / "clip.ogg"
    import soxr
    sf.write(path, soxr.resample(samples, rate, 44100), 44100, format="OGG", subtype="VORBIS")
    done = run_cli(str(path), "--address", stack.gateway.address, "--fast", "--mode", "sensevoice")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert sum("speech started" in line for line in lines) == 2
    segments = [line for line in lines if line.strip().startswith("segment ")]
    assert len(segments) == 2 and all("emotion:" in s and "language:" in s for s in segments)
    assert any(line.startswith("summary: 2 segments") for line in lines)
    assert any("random-weight demo models" in s for s in segments)


def test_errors_are_reported_not_raised(stack, tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio")
    done = run_cli(str(bad), "--address", stack.gateway.address, "--fast")
    assert done.returncode == 2 and "cannot read" in done.stderr
    done = run_cli(str(SHARED_AUDIO / "zh_single.wav"), "--address", "127.0.0.1:9", "--fast",
                   "--connect-timeout", "2")
    assert done.returncode == 3 and "no answer from 127.0.0.1:9" in done.stderr
    done = run_cli("--address", stack.gateway.address)
    assert done.returncode == 2 and "either FILE or --mic" in done.stderr


# ---- defects found by a new user (each failed before its fix) ---------------------------------

def test_mic_without_sounddevice_says_what_to_install(stack, tmp_path):
    """It used to hang (the import failed inside gRPC's request thread)."""
    (tmp_path / "sounddevice.py").write_text("raise ImportError('no PortAudio here')\n")
    done = run_cli("--mic", "--address", stack.gateway.address, timeout=30, env={"PYTHONPATH": str(tmp_path)})
    assert done.returncode == 2
    assert "pip install" in done.stderr and "sounddevice" in done.stderr


def test_progress_bar_leaves_no_fragments_in_a_terminal(stack):
    """In a real terminal (a pty here) every event line starts clean: the bar is erased first.
    What a terminal shows of a line is what follows its last carriage return."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))  # a 80x24 terminal
    proc = subprocess.Popen([sys.executable, "-m", "speech_analysis_client", str(SHARED_AUDIO / "zh_single.wav"),
                             "--address", stack.gateway.address], cwd=ROOT, stdin=terminal, stdout=terminal,
                            stderr=terminal)
    os.close(terminal)
    output = b""
    while True:
        ready, _, _ = select.select([controller], [], [], 60)
        assert ready, output
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # the pty closes when the client exits
            break
        if not chunk:
            break
        output += chunk
    assert proc.wait(30) == 0, output
    text = output.decode().replace("\r\n", "\n")  # the terminal's own newline translation
    shown = [line.split("\r")[-1] for line in text.split("\n")]
    events = [line for line in shown if "speech started" in line or line.startswith(("summary:", "  segment"))]
    assert len(events) >= 3, output
    assert all(line.startswith(("[", "summary:", "  segment")) for line in events), events
    assert "sent " in text, "no progress bar was drawn at all"


def test_partial_failures_are_readable_and_exit_nonzero(stack):
    """With the emotion worker unreachable every segment partly fails: the events are printed as
    text (not protobuf), and the exit status (4) tells a script."""
    gateway = start_server("gateway.server", "cli-gateway-no-emotion", env={
        "VAD_ADDRESS": stack.vad.address, "ASR_ADDRESS": stack.asr.address, "EMOTION_ADDRESS": "127.0.0.1:9",
        "WORKER_TIMEOUT_S": "3"})
    try:
        done = run_cli(str(SHARED_AUDIO / "zh_single.wav"), "--address", gateway.address, "--fast")
    finally:
        gateway.stop()
    assert done.returncode == 4, done.stderr
    errors = [line for line in done.stdout.splitlines() if line.startswith("error: ")]
    assert errors and all("UNAVAILABLE" in line and "{" not in line for line in errors), done.stdout
    assert "summary: 1 segment," in done.stdout, done.stdout


def test_json_keeps_zero_values(stack):
    done = run_cli(str(SHARED_AUDIO / "zh_single.wav"), "--address", stack.gateway.address, "--fast", "--json")
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    first = next(e["speechStarted"] for e in events if "speechStarted" in e)
    result = next(e["segmentResult"] for e in events if "segmentResult" in e)
    assert first["segmentId"] == 0 and result["segmentId"] == 0
    assert "errors" in result and result["errors"] == []


def test_a_silent_server_fails_within_the_connect_timeout():
    """A port that accepts connections but never speaks HTTP/2 (it used to take 21 s)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        started = time.monotonic()
        done = run_cli(str(SHARED_AUDIO / "zh_single.wav"), "--address", f"127.0.0.1:{silent.getsockname()[1]}",
                       "--connect-timeout", "1", timeout=30)
    assert done.returncode == 3 and "--connect-timeout" in done.stderr, done.stderr
    assert time.monotonic() - started < 15


def test_input_errors_standard_input_and_names(stack, tmp_path):
    done = run_cli(str(tmp_path / "missing.wav"), "--address", stack.gateway.address)
    assert done.returncode == 2 and "no such file" in done.stderr and "System error" not in done.stderr
    wav = (SHARED_AUDIO / "zh_single.wav").read_bytes()
    done = subprocess.run([sys.executable, "-m", "speech_analysis_client", "-", "--address", stack.gateway.address,
                           "--fast"], cwd=ROOT, input=wav, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert b"summary: 1 segment," in done.stdout
    help_text = run_cli("--help").stdout
    assert help_text.startswith("usage: speech-analysis-client") and "exit status" in help_text


def test_an_address_without_port_means_the_gateway_port():
    assert with_default_port("gateway.internal") == f"gateway.internal:{DEFAULT_PORT}"
    assert with_default_port("10.0.0.7") == f"10.0.0.7:{DEFAULT_PORT}"
    assert with_default_port("::1") == f"[::1]:{DEFAULT_PORT}"
    assert with_default_port("[::1]") == f"[::1]:{DEFAULT_PORT}"
    for kept in ("gateway.internal:9000", "[::1]:9000", "dns:///gateway:9000", "unix:/run/gw.sock"):
        assert with_default_port(kept) == kept
