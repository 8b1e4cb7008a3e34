#!/usr/bin/env python3
"""Export the SpeechBrain emotion model to ONNX for ``EMOTION_RUNTIME=onnx`` (no torch in the worker).

Usage::

    python scripts/export_emotion_onnx.py          # pretrained_models/emotion-recognition-wav2vec2-IEMOCAP/onnx/
    python scripts/export_emotion_onnx.py --model-dir /models/pretrained_models/emotion-recognition-wav2vec2-IEMOCAP
    python scripts/export_emotion_onnx.py --model-dir M --out /var/lib/speech-analysis/emotion-onnx

Writes ``emotion-fp32.onnx``, ``emotion-int8.onnx`` and ``emotion-onnx.json``
(see services/emotion/onnx_runtime.py). Needs torch, SpeechBrain and onnx
(all in requirements.txt), reads only local files, and takes well under a
minute on two cores. Run it again after replacing the model.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from services.common.model_paths import SPEECHBRAIN_EMOTION_SUBDIR  # noqa: E402
from services.common.settings import PROJECT_ROOT  # noqa: E402

DEFAULT_MODEL_DIR = PROJECT_ROOT / SPEECHBRAIN_EMOTION_SUBDIR


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR, help="the SpeechBrain model directory")
    parser.add_argument("--out", type=Path, help="output directory (default: MODEL_DIR/onnx)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from services.common import model_paths
    from services.emotion.onnx_runtime import export_onnx

    missing = model_paths.missing_files(args.model_dir, model_paths.MODEL_SPECS["speechbrain_emotion"])
    if missing:
        print(f"{args.model_dir} is not a complete emotion model directory (missing {', '.join(missing)}); "
              f"fetch it with `{model_paths.download_command(['speechbrain_emotion'])}`", file=sys.stderr)
        return 1
    manifest = export_onnx(args.model_dir, args.out or args.model_dir / "onnx")
    print(f"exported {args.model_dir} -> {args.out or args.model_dir / 'onnx'} ({manifest['exported_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
