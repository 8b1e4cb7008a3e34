#!/usr/bin/env bash
# Install the project into .venv (idempotent; re-runs only when requirements change).
#
# Torch handling, done once here and nowhere else:
#  * torch is installed FIRST and pinned (constraints.txt) to the CPU build 2.13.0.
#    PyPI's default torch is a CUDA build of several GB whose import costs ~280 MB
#    more resident memory per process; on small CPU-only hosts that matters.
#    On these dev machines `pip install torch==2.13.0+cpu` finds a local CPU wheel; elsewhere
#    set TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu (the Dockerfile does).
#  * torchaudio 2.11.0 from PyPI declares no torch requirement but its bundled C
#    extension (torchaudio/lib/*.so) links CUDA libraries and fails to import
#    against CPU torch. We install it without deps and delete that extension:
#    torchaudio then runs in pure-Python mode, in which the only parts FunASR and
#    SpeechBrain use here (compliance.kaldi.fbank, functional.resample) work.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
PIP=(.venv/bin/python -m pip --disable-pip-version-check)
stamp=".venv/.installed-$(cat requirements.txt constraints.txt scripts/install.sh | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "== installing into .venv (torch CPU build first)"
  "${PIP[@]}" install -q --upgrade pip
  "${PIP[@]}" install -q torch==2.13.0+cpu ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
  "${PIP[@]}" install -q --no-deps torchaudio==2.11.0
  rm -f .venv/lib/python3*/site-packages/torchaudio/lib/*.so
  "${PIP[@]}" install -q -c constraints.txt -r requirements.txt
  .venv/bin/python - <<'PY'
import torch, torchaudio
from torchaudio.compliance import kaldi
import torchaudio.functional as F
x = torch.zeros(1, 16000)
kaldi.fbank(x, num_mel_bins=80); F.resample(x, 16000, 8000)
if torch.version.cuda:
    print("WARNING: a CUDA build of torch is installed; set TORCH_INDEX_URL to the CPU index")
print(f"torch {torch.__version__} (cuda={torch.version.cuda}), torchaudio {torchaudio.__version__} pure-Python: ok")
PY
  rm -f .venv/.installed-*
  touch "$stamp"
fi
