"""The client wheel (clients/python) installs into a fresh venv without torch and talks to the
running stack (tiny random-weight models) through ``Analyze``, ``AnalyzeFile`` and its CLI.

Apart from tests/test_packaging.py because it needs the stack: it runs in the stack's
scheduling unit (tests/conftest.py), the service's packaging tests outside it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.audio_helpers import BOUNDARY_TOLERANCE_MS, truth_segments_ms
from tests.conftest import SHARED_AUDIO
from tests.procs import ROOT
from tests.venvs import fresh_venv, pip_into

CLIENT_PROGRAM = r"""
import json, sys
import grpc, soundfile
from speech_analysis.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc
from speech_analysis_client import analyze, analyze_file

address, path = sys.argv[1:]
samples, rate = soundfile.read(path, dtype="int16")
config = gateway_pb2.StreamConfig(mode=common_pb2.ASR_MODE_PARAFORMER)

def summarise(events):
    kinds = [e.WhichOneof("event") for e in events]
    segments = [[e.segment_result.start_ms, e.segment_result.end_ms, list(e.segment_result.errors)]
                for e in events if e.WhichOneof("event") == "segment_result"]
    return {"kinds": kinds, "segments": segments, "summary_segments": events[-1].summary.segment_count}

with grpc.insecure_channel(address) as channel:
    stub = gateway_pb2_grpc.SpeechAnalysisServiceStub(channel)
    streamed = list(analyze(stub, samples, rate, config, timeout=180))
    from_file = analyze_file(stub, open(path, "rb").read(), config, timeout=180)
print(json.dumps({"analyze": summarise(streamed), "analyze_file": summarise(from_file)}))
"""


@pytest.mark.slow
def test_client_wheel_installs_without_torch_and_analyzes(stack, manifest, tmp_path: Path):
    # built from a copy (same layout: the client's pyproject points at ../../) so no build/ lands here
    source = tmp_path / "source"
    for name in ("clients/python", "speech_analysis/v1", "speech_analysis_client"):
        shutil.copytree(ROOT / name, source / name,
                        ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
    dist = tmp_path / "dist"
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                             "-w", str(dist), str(source / "clients" / "python")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = dist.glob("speech_analysis_client-*.whl")
    python = fresh_venv(tmp_path / "venv", with_deps_of_this_venv=False)
    pip_into(python, "install", "-q", str(wheel))  # real dependency resolution, pip's own index settings

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    modules = subprocess.run(
        [str(python), "-c", "import importlib.util as u, json; print(json.dumps({m: u.find_spec(m) is not None for m "
         "in ('torch', 'torchaudio', 'funasr', 'speechbrain', 'gateway', 'services', 'speech_analysis.worker')}))"],
        cwd=elsewhere, check=True, capture_output=True, text=True).stdout
    assert not any(json.loads(modules).values()), modules  # no models, no service, no internal stubs

    clip = manifest["zh_weather"]
    truth = truth_segments_ms(clip)
    wav = SHARED_AUDIO / clip["file"]
    out = subprocess.run([str(python), "-c", CLIENT_PROGRAM, stack.gateway.address, str(wav)],
                         cwd=elsewhere, capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    for call in ("analyze", "analyze_file"):
        got = report[call]
        assert got["kinds"][-1] == "summary" and got["summary_segments"] == len(truth), (call, got)
        assert len(got["segments"]) == len(truth), (call, got)
        for (start, end, errors), (t_start, t_end) in zip(got["segments"], truth):
            assert not errors, (call, errors)
            assert abs(start - t_start) <= BOUNDARY_TOLERANCE_MS, (call, start, t_start)
            assert abs(end - t_end) <= BOUNDARY_TOLERANCE_MS, (call, end, t_end)

    cli = subprocess.run([str(tmp_path / "venv" / "bin" / "speech-analysis-client"), str(wav), "--fast", "--json",
                          "--address", stack.gateway.address], cwd=elsewhere, capture_output=True, text=True,
                         timeout=300)
    assert cli.returncode == 0, cli.stderr
    events = [json.loads(line) for line in cli.stdout.splitlines()]
    assert sum("segmentResult" in e for e in events) == len(truth)
    assert "summary" in events[-1]
