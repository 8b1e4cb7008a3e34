"""scripts/start.sh on a host without models and without network: clear instructions, no hang."""

from __future__ import annotations

import os
import subprocess
import time

from tests.procs import ROOT, free_port


def test_start_without_models_or_network_stops_with_offline_instructions(tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens: "no network", refused at once
    env = {**os.environ, "PROJECT_ROOT": str(tmp_path), "MODEL_CACHE_DIR": str(tmp_path / "cache"),
           "HF_ENDPOINT": dead, "MODELSCOPE_ENDPOINT": dead}
    started = time.monotonic()
    done = subprocess.run(["bash", "scripts/start.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output[-3000:]
    assert "models missing" in output and "Offline hosts" in output
    assert "download_models.py" in output and "--demo-models" in output
    assert "stack ready" not in output  # nothing was started
    assert time.monotonic() - started < 240
    # Nothing half-written passes for a model.
    assert not (tmp_path / "pretrained_models" / "emotion-recognition-wav2vec2-IEMOCAP" / "hyperparams.yaml").exists()
