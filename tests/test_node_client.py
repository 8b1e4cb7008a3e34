"""The Node.js client (clients/node: @grpc/grpc-js + @grpc/proto-loader on the unmodified protos)
against the real stack (tiny random-weight models): it streams a WAV at real-time pace and its
JSON-line events carry the manifest's segments.

Needs node and ``npm ci`` in clients/node: scripts/install_test_deps.sh does both.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest

from tests.audio_helpers import BOUNDARY_TOLERANCE_MS, truth_segments_ms
from tests.conftest import SHARED_AUDIO
from tests.procs import ROOT

CLIENT = ROOT / "clients" / "node" / "client.js"


@pytest.fixture(scope="module")
def node() -> str:
    binary = shutil.which("node")
    assert binary, "node missing: run bash scripts/install_test_deps.sh"
    assert (ROOT / "clients" / "node" / "node_modules" / "@grpc" / "grpc-js").is_dir(), \
        "clients/node/node_modules missing: run bash scripts/install_test_deps.sh (npm ci)"
    return binary


def _run(node: str, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([node, str(CLIENT), *args], cwd=ROOT / "clients" / "node", capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.slow
def test_node_client_streams_in_real_time_and_gets_the_manifest_segments(node, stack, manifest):
    clip = manifest["en_meeting"]  # three segments in 10.5 s of real time
    truth = truth_segments_ms(clip)
    started = time.monotonic()
    result = _run(node, str(SHARED_AUDIO / clip["file"]), "--address", stack.gateway.address,
                  "--mode", "paraformer")
    elapsed_s = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert elapsed_s >= clip["duration"] * 0.95, elapsed_s  # real-time pace, not a burst
    events = [json.loads(line) for line in result.stdout.splitlines()]
    kinds = [e["event"] for e in events]  # oneofs: true names the field that is set
    assert kinds[-1] == "summary" and kinds.count("segment_result") == len(truth), kinds

    started_ms = [e["speech_started"]["start_ms"] for e in events if e["event"] == "speech_started"]
    ended = [(e["speech_ended"]["start_ms"], e["speech_ended"]["end_ms"]) for e in events
             if e["event"] == "speech_ended"]
    results = [e["segment_result"] for e in events if e["event"] == "segment_result"]
    assert [r["segment_id"] for r in results] == list(range(len(truth)))
    assert len(started_ms) == len(ended) == len(truth)
    for result_, (start, end), (t_start, t_end) in zip(results, ended, truth):
        # uint64 fields arrive as JS numbers (longs: Number), never Long objects or strings
        assert isinstance(result_["start_ms"], int) and isinstance(result_["end_ms"], int), result_
        assert (result_["start_ms"], result_["end_ms"]) == (start, end)
        assert abs(start - t_start) <= BOUNDARY_TOLERANCE_MS, (start, t_start)
        assert abs(end - t_end) <= BOUNDARY_TOLERANCE_MS, (end, t_end)
        assert result_["errors"] == [] and result_["random_weights"] is True  # defaults: true fills repeated/bools
        (emotion,) = [e for e in result_["emotions"] if e["source"] == "speechbrain"]
        assert abs(sum(p["probability"] for p in emotion["probabilities"]) - 1) < 1e-4
    summary = events[-1]["summary"]
    assert summary["segment_count"] == len(truth)
    assert abs(sum(d["share"] for d in summary["emotion_distribution"]) - 1) < 1e-4
    assert sum(d["duration_ms"] for d in summary["emotion_distribution"]) == summary["speech_duration_ms"]


def test_node_client_reports_grpc_errors_as_json(node):
    """An unreachable gateway: exit status 1 and the status code's name as JSON on stderr."""
    closed = _run(node, str(SHARED_AUDIO / "zh_single.wav"), "--address", "127.0.0.1:9", "--fast", timeout=60)
    assert closed.returncode == 1, closed.stderr
    assert json.loads(closed.stderr.splitlines()[-1])["error"]["code"] == "UNAVAILABLE"


def test_node_client_separate_channels_and_speaker_requests(node, stack, spine_gateway, tmp_path):
    """--separate-channels reaches the gateway (events of both channels); --speakers asks for
    labels, which a gateway without a speaker worker refuses with FAILED_PRECONDITION."""
    import numpy as np
    import soundfile as sf

    left, rate = sf.read(SHARED_AUDIO / "zh_single.wav", dtype="int16")
    stereo = np.zeros((left.size + rate, 2), dtype=np.int16)
    stereo[:left.size, 0], stereo[rate:, 1] = left, left
    path = tmp_path / "call.wav"
    sf.write(path, stereo, rate, subtype="PCM_16")
    separate = _run(node, str(path), "--address", stack.gateway.address, "--fast", "--separate-channels")
    assert separate.returncode == 0, separate.stderr
    events = [json.loads(line) for line in separate.stdout.splitlines()]
    results = [e["segment_result"] for e in events if e["event"] == "segment_result"]
    assert sorted(r["channel"] for r in results) == [0, 1]
    assert [c["channel"] for c in events[-1]["summary"]["channels"]] == [0, 1]
    refused = _run(node, str(path), "--address", spine_gateway.address, "--fast", "--speakers",
                   "--max-speakers", "3", timeout=60)
    assert refused.returncode == 1, refused.stderr
    error = json.loads(refused.stderr.splitlines()[-1])["error"]
    assert error["code"] == "FAILED_PRECONDITION" and "SPEAKER_ADDRESS" in error["details"]
