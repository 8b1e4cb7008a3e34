#!/usr/bin/env python3
"""Export the CAM++ speaker model to ONNX for ``SPEAKER_RUNTIME=onnx`` (no torch in the worker).

Usage::

    python scripts/export_speaker_onnx.py          # the worker's CAM++ directory (MODEL_CACHE_DIR) + onnx/
    python scripts/export_speaker_onnx.py --model-dir /models/model_cache/models/iic/speech_campplus_sv_zh-cn_16k-common
    python scripts/export_speaker_onnx.py --model-dir M --out /var/lib/speech-analysis/speaker-onnx

Writes ``campplus.onnx`` and ``speaker-onnx.json`` (see
services/speaker/onnx_runtime.py). Needs torch, FunASR and onnx (all in
requirements.txt), reads only local files, and takes a few seconds. Run it
again after replacing the model: the worker refuses an export made from other
model files.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from services.common import model_paths  # noqa: E402
from services.common.settings import ModelSettings, load_many  # noqa: E402


def default_model_dir() -> Path:
    """Where the speaker worker looks for CAM++ (PROJECT_ROOT / MODEL_CACHE_DIR as it reads them)."""
    (models,) = load_many(ModelSettings, argv=[])
    layout = model_paths.resolve_models(Path(models.project_root), models.model_cache_dir)
    return layout.get(model_paths.SPEAKER_MODEL).path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, help="the CAM++ model directory (default: the speaker "
                        "worker's, from PROJECT_ROOT and MODEL_CACHE_DIR)")
    parser.add_argument("--out", type=Path, help="output directory (default: MODEL_DIR/onnx)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    model_dir = args.model_dir or default_model_dir()
    out = args.out or model_dir / "onnx"

    missing = model_paths.missing_files(model_dir, model_paths.MODEL_SPECS[model_paths.SPEAKER_MODEL])
    if missing:
        print(f"{model_dir} is not a complete CAM++ model directory (missing {', '.join(missing)}); "
              f"fetch it with `{model_paths.download_command([model_paths.SPEAKER_MODEL])}`", file=sys.stderr)
        return 1
    from services.speaker.onnx_runtime import export_onnx

    manifest = export_onnx(model_dir, out)
    print(f"exported {model_dir} -> {out} ({manifest['exported_s']} s; unit embeddings within "
          f"{manifest['max_abs_diff_vs_torch']} of torch)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
