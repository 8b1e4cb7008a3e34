#!/usr/bin/env python3
"""Generate random-weight models in the real on-disk layouts (tests and benchmarks).

Usage::

    python scripts/make_test_models.py --size tiny --out /tmp/models
    python scripts/make_test_models.py --size full --out /data/bench-models --only paraformer

The output directory can stand in for ``pretrained_models/``::

    OUT/model_cache/models/iic/...                         Paraformer trio (ModelScope layout)
    OUT/model_cache/huggingface/hub/models--FunAudioLLM--SenseVoiceSmall/...   (HF cache layout)
    OUT/emotion-recognition-wav2vec2-IEMOCAP/              SpeechBrain emotion model

so ``MODEL_CACHE_DIR=OUT/model_cache`` and a project root whose
``pretrained_models`` is OUT serve them to the workers. Every model directory
carries ``RANDOM_WEIGHTS.json``: outputs are meaningless, only shapes, speed
and memory are real (``full``) or small (``tiny``).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
if str(PROJECT_ROOT) not in sys.path:  # run as a script: make `scripts.*` and `services.*` importable
    sys.path.insert(0, str(PROJECT_ROOT))

from scripts.fixtures.common import SIZES, dir_size_bytes  # noqa: E402

__all__ = ["ALL_GROUPS", "EMOTION_DIRNAME", "build_emotion_if_available", "build_all", "main"]

log = logging.getLogger("make_test_models")

ALL_GROUPS = ("paraformer", "sensevoice", "emotion")
EMOTION_DIRNAME = "emotion-recognition-wav2vec2-IEMOCAP"


def build_emotion_if_available(out_dir: Path, size: str) -> Path | None:
    """Build the SpeechBrain emotion fixture when its builder module is importable."""
    try:
        module = importlib.import_module("scripts.fixtures.speechbrain_emotion")
    except ImportError as exc:
        log.warning("emotion model skipped: scripts.fixtures.speechbrain_emotion not importable (%s)", exc)
        return None
    return module.build_emotion_model(Path(out_dir) / EMOTION_DIRNAME, size)


def build_all(out_dir: Path, size: str, groups: tuple[str, ...] = ALL_GROUPS, ncpu: int = 2) -> dict[str, float]:
    """Build ``groups`` under ``out_dir``; return seconds spent per group."""
    from scripts.fixtures.funasr_models import build_funasr_models

    out_dir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    for group in groups:
        started = time.perf_counter()
        if group == "emotion":
            build_emotion_if_available(out_dir, size)
        else:
            build_funasr_models(out_dir, size, groups=(group,), ncpu=ncpu)
        timings[group] = time.perf_counter() - started
        log.info("%s (%s) built in %.1f s", group, size, timings[group])
    return timings


def _parse_groups(text: str) -> tuple[str, ...]:
    groups = tuple(g.strip() for g in text.split(",") if g.strip())
    unknown = [g for g in groups if g not in ALL_GROUPS]
    if unknown or not groups:
        raise argparse.ArgumentTypeError(f"choose from {','.join(ALL_GROUPS)}; got {text!r}")
    return groups


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=SIZES, required=True, help="tiny (tests) or full (benchmarks)")
    parser.add_argument("--out", type=Path, required=True, help="output directory (a pretrained_models/ stand-in)")
    parser.add_argument("--only", type=_parse_groups, default=ALL_GROUPS,
                        help=f"comma-separated subset of {','.join(ALL_GROUPS)} (default: all)")
    parser.add_argument("--ncpu", type=int, default=2, help="torch threads while building")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    started = time.perf_counter()
    timings = build_all(args.out, args.size, args.only, ncpu=args.ncpu)
    total_s = time.perf_counter() - started
    size_mb = dir_size_bytes(args.out) / 1e6
    print(f"built {','.join(args.only)} ({args.size}) in {args.out}: {size_mb:.1f} MB, {total_s:.1f} s "
          f"({', '.join(f'{g} {s:.1f} s' for g, s in timings.items())})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
