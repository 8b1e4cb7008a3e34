#!/usr/bin/env python3
"""Generate random-weight models in the real on-disk layouts (tests and benchmarks).

Usage::

    python scripts/make_test_models.py --size tiny --out /tmp/models
    python scripts/make_test_models.py --size full --out /data/bench-models --only paraformer
    python scripts/make_test_models.py --size full --out /data/bench-models --no-build --verify \
        --audio ../shared/audio/zh_weather.wav        # keys, RSS after load, RTF (fresh process each)

The output directory can stand in for ``pretrained_models/``::

    OUT/model_cache/models/iic/...                         Paraformer trio (ModelScope layout)
    OUT/model_cache/models/iic/emotion2vec_plus_base/      emotion2vec+ (ModelScope layout; --only emotion2vec)
    OUT/model_cache/models/iic/speech_campplus_sv_zh-cn_16k-common/   CAM++ speaker model (--only speaker)
    OUT/model_cache/huggingface/hub/models--FunAudioLLM--SenseVoiceSmall/...   (HF cache layout)
    OUT/emotion-recognition-wav2vec2-IEMOCAP/              SpeechBrain emotion model

so ``MODEL_CACHE_DIR=OUT/model_cache`` and a project root whose
``pretrained_models`` is OUT serve them to the workers. Every model directory
carries ``RANDOM_WEIGHTS.json``: outputs are meaningless, only shapes, speed
and memory are real (``full``) or small (``tiny``).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
if str(PROJECT_ROOT) not in sys.path:  # run as a script: make `scripts.*` and `services.*` importable
    sys.path.insert(0, str(PROJECT_ROOT))

from scripts.fixtures.common import SIZES, dir_size_bytes  # noqa: E402

__all__ = ["ALL_GROUPS", "build_all", "verify", "main"]

log = logging.getLogger("make_test_models")

ALL_GROUPS = ("paraformer", "sensevoice", "emotion", "emotion2vec", "speaker")

def build_all(out_dir: Path, size: str, groups: tuple[str, ...] = ALL_GROUPS, ncpu: int = 2) -> dict[str, float]:
    """Build ``groups`` under ``out_dir``; return seconds spent per group."""
    from scripts.fixtures.funasr_models import build_funasr_models

    out_dir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    for group in groups:
        started = time.perf_counter()
        if group == "emotion":
            from scripts.fixtures.speechbrain_emotion import MODEL_DIRNAME, build_emotion_model

            build_emotion_model(out_dir / MODEL_DIRNAME, size)
        elif group == "emotion2vec":
            from scripts.fixtures.emotion2vec import build_emotion2vec_model, model_dir_in_cache

            build_emotion2vec_model(model_dir_in_cache(out_dir / "model_cache"), size)
        elif group == "speaker":
            from scripts.fixtures.campplus import build_campplus_model, model_dir_in_cache

            build_campplus_model(model_dir_in_cache(out_dir / "model_cache"), size)
        else:
            build_funasr_models(out_dir, size, groups=(group,), ncpu=ncpu)
        timings[group] = time.perf_counter() - started
        log.info("%s (%s) built in %.1f s", group, size, timings[group])
    return timings


_VERIFY_TARGETS = ("paraformer", "paraformer-trio", "sensevoice")


def _rss_mb() -> float:
    from services.common.memory import memory_mb

    return memory_mb()[0]


def _verify_one(out_dir: Path, target: str, ncpu: int, audio_path: Path | None, repeats: int) -> dict:
    """Load one model (set) through funasr.AutoModel offline; report keys, RSS and RTF (child process)."""
    import contextlib
    import io
    import os

    from scripts.fixtures.funasr_models import SENSEVOICE_REPO_ID, funasr_model_tree

    tree = funasr_model_tree(out_dir)
    # huggingface_hub reads these once, at import: set them before funasr imports it
    os.environ["HF_HOME"] = str(tree.hf_home)
    os.environ["HF_HUB_OFFLINE"] = "1"
    import numpy as np

    rss_start = _rss_mb()
    from funasr import AutoModel

    rss_imported = _rss_mb()
    if target == "sensevoice":
        kwargs = {"model": SENSEVOICE_REPO_ID, "hub": "hf"}
        n_models = 1
    elif target == "paraformer":
        kwargs = {"model": str(tree.paraformer_dir)}
        n_models = 1
    else:
        kwargs = {"model": str(tree.paraformer_dir), "vad_model": str(tree.vad_dir),
                  "punc_model": str(tree.punc_dir)}
        n_models = 3
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)
    started = time.perf_counter()
    with contextlib.redirect_stdout(buffer):
        model = AutoModel(disable_update=True, disable_pbar=True, ncpu=ncpu, device="cpu", **kwargs)
    load_s = time.perf_counter() - started
    logging.getLogger().removeHandler(handler)
    logging.getLogger().setLevel(logging.WARNING)
    log_text = buffer.getvalue()
    rss_loaded = _rss_mb()

    if audio_path is not None:
        import soundfile as sf

        audio, rate = sf.read(audio_path, dtype="float32")
        assert rate == 16000, "--audio must be 16 kHz"
        audio = audio[: 5 * rate] if audio.ndim == 1 else audio[: 5 * rate, 0]
    else:
        from scripts.fixtures.common import synth_speech_like

        audio = synth_speech_like(np.random.default_rng(0), 5.0)[0]
    duration_s = len(audio) / 16000
    gen_kwargs = {"language": "auto", "use_itn": True} if target == "sensevoice" else {}
    if target == "paraformer-trio":
        gen_kwargs["batch_size_s"] = 300
    result = model.generate(audio, **gen_kwargs)  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = model.generate(audio, **gen_kwargs)
        times.append(time.perf_counter() - started)
    return {
        "target": target,
        "keys_matched": log_text.count("All keys matched successfully") == n_models
        and "miss key in ckpt" not in log_text and "ignore_init_mismatch" not in log_text,
        "load_s": round(load_s, 2),
        "rss_mb": {"start": round(rss_start), "after_import": round(rss_imported), "after_load": round(rss_loaded),
                   "after_generate": round(_rss_mb())},
        "audio_s": round(duration_s, 2),
        "rtf": round(min(times) / duration_s, 4),
        "rtf_median": round(sorted(times)[len(times) // 2] / duration_s, 4),
        "ncpu": ncpu,
        "text": str(result[0].get("text", ""))[:80] if result else "",
    }


def verify(out_dir: Path, targets: tuple[str, ...], ncpu: int, audio_path: Path | None, repeats: int) -> list[dict]:
    """Run :func:`_verify_one` for each target in a fresh process (so RSS is per model set)."""
    import json
    import subprocess

    reports = []
    for target in targets:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--verify-child", target, "--out", str(out_dir),
               "--ncpu", str(ncpu), "--repeats", str(repeats), "--size", "full"]
        if audio_path is not None:
            cmd += ["--audio", str(audio_path)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        if proc.returncode != 0 or not lines:
            raise RuntimeError(f"verifying {target} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        reports.append(json.loads(lines[-1]))
        log.info("verified %s", reports[-1])
    return reports


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
    parser.add_argument("--verify", action="store_true",
                        help="after building (or with --no-build), load each model set through funasr.AutoModel "
                        "offline in a fresh process: report key matching, RSS after load and RTF on 5 s audio")
    parser.add_argument("--no-build", action="store_true", help="only --verify an existing --out tree")
    parser.add_argument("--audio", type=Path, default=None, help="16 kHz wav for --verify (default: synthetic)")
    parser.add_argument("--repeats", type=int, default=3, help="timed generate() calls per model set in --verify")
    parser.add_argument("--verify-child", choices=_VERIFY_TARGETS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    if args.verify_child:
        import json

        print(json.dumps(_verify_one(args.out, args.verify_child, args.ncpu, args.audio, args.repeats),
                         ensure_ascii=False))
        return 0
    if args.no_build:
        targets = tuple(t for t in _VERIFY_TARGETS if t.split("-")[0] in args.only)
        for report in verify(args.out, targets, args.ncpu, args.audio, args.repeats):
            print(report)
        return 0

    started = time.perf_counter()
    timings = build_all(args.out, args.size, args.only, ncpu=args.ncpu)
    total_s = time.perf_counter() - started
    size_mb = dir_size_bytes(args.out) / 1e6
    print(f"built {','.join(args.only)} ({args.size}) in {args.out}: {size_mb:.1f} MB, {total_s:.1f} s "
          f"({', '.join(f'{g} {s:.1f} s' for g, s in timings.items())})")
    if args.verify:
        targets = tuple(t for t in _VERIFY_TARGETS if t.split("-")[0] in args.only)
        for report in verify(args.out, targets, args.ncpu, args.audio, args.repeats):
            print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
