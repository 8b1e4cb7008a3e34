"""The command-line client as a real subprocess against the real stack (tiny models)."""

from __future__ import annotations

import json
import subprocess
import sys

import soundfile as sf

from tests.conftest import SHARED_AUDIO, read_clip
from tests.procs import ROOT


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "speech_analysis_client", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


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
    done = run_cli(str(SHARED_AUDIO / "zh_single.wav"), "--address", "127.0.0.1:9", "--fast")
    assert done.returncode == 1 and "UNAVAILABLE" in done.stderr
    done = run_cli("--address", stack.gateway.address)
    assert done.returncode == 2 and "either FILE or --mic" in done.stderr
