"""Shared fixtures: real worker/gateway processes on free loopback ports, shared audio."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.procs import ROOT, start_server

SHARED_AUDIO = ROOT.parent / "shared" / "audio"


def load_manifest() -> dict:
    return json.loads((SHARED_AUDIO / "manifest.json").read_text())


def read_clip(name: str, dtype: str = "float32") -> tuple[np.ndarray, int]:
    entry = load_manifest()[name]
    return sf.read(SHARED_AUDIO / entry["file"], dtype=dtype)


@pytest.fixture(scope="session")
def manifest() -> dict:
    return load_manifest()


@pytest.fixture(scope="session")
def vad_worker():
    server = start_server("services.vad.server", "vad")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def spine_gateway(vad_worker):
    """Gateway wired to a real VAD worker; ASR/emotion addresses point at closed ports."""
    server = start_server("gateway.server", "gateway", env={
        "VAD_ADDRESS": vad_worker.address, "ASR_ADDRESS": "127.0.0.1:9", "EMOTION_ADDRESS": "127.0.0.1:9",
        "WORKER_TIMEOUT_S": "5"})
    yield server
    server.stop()
