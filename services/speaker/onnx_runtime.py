"""CAM++ on onnxruntime (``SPEAKER_RUNTIME=onnx``): no torch and no FunASR in the worker.

The embedding network (80-bin fbank features (batch, frames, 80) -> embedding
(batch, 192)) is exported once to ONNX by ``scripts/export_speaker_onnx.py``
(:func:`export_onnx`, which needs torch and FunASR) next to the model:
``<model dir>/onnx/campplus.onnx`` plus ``speaker-onnx.json`` (feature
settings, embedding size, opset, and the size and SHA-256 of each model file
it was exported from). The frame axis is dynamic: one graph serves every
segment length.

The features are computed without torch by kaldi-native-fbank (k2-fsa's C++
Kaldi fbank), set up to compute what FunASR's
``funasr.models.campplus.utils.extract_feature`` computes (what
``CAMPPlus.inference`` and the torch runtime use):
``torchaudio.compliance.kaldi.fbank(wave, num_mel_bins=80)`` with torchaudio's
defaults (:data:`FBANK_SETTINGS`; no dither, povey window, pre-emphasis 0.97,
DC offset removed, snip edges, 25 ms frames every 10 ms), on the waveform as
it comes, in [-1, 1] (FunASR does not scale it by 32768 for CAM++), then minus
its mean over time. On real speech the two feature sets differ by float32
rounding only (tests/test_speaker_onnx.py), the embeddings by ~1e-6.

Measured on the full-size fixture (bench/speaker_bench.py, one thread, busy
2-core host): 130 MiB resident after load and 210 MiB at the peak while
serving, against 311 / 401 MiB on torch, and 12-15 instead of 21-26 ms of CPU
per second of speech on 3-15 s segments (bench/README.md "Speaker worker").

A stale export is refused: at load the manifest's file sizes and checksums are
compared with the model directory's files (:func:`check_export`); the worker
then exits naming the export command, as it does when the export is missing.

Usage::

    export_onnx(model_dir, model_dir / "onnx")                    # once, with torch installed
    model = load_onnx_model(model_dir / "onnx", model_dir, threads=1)
    engine = SpeakerEngine(model, SpeakerOptions())               # as with the torch model
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np

from services.common.audio import SAMPLE_RATE_HZ
from services.common.model_paths import MODEL_SPECS, SPEAKER_MODEL

__all__ = ["ONNX_SUBDIR", "MODEL_FILE", "MANIFEST", "EXPORT_COMMAND", "FBANK_SETTINGS", "fbank_features",
           "source_fingerprint", "check_export", "OnnxCamPlusModel", "load_onnx_model", "export_onnx"]

log = logging.getLogger(__name__)

ONNX_SUBDIR = "onnx"
"""Default place of the exported files, inside the CAM++ model directory."""
MODEL_FILE = "campplus.onnx"
MANIFEST = "speaker-onnx.json"
EXPORT_COMMAND = "python scripts/export_speaker_onnx.py"

FBANK_SETTINGS: dict = {
    "sample_rate_hz": SAMPLE_RATE_HZ,
    "num_mel_bins": 80,
    "frame_length_ms": 25.0,
    "frame_shift_ms": 10.0,
    "dither": 0.0,
    "preemphasis_coefficient": 0.97,
    "remove_dc_offset": True,
    "window_type": "povey",
    "round_to_power_of_two": True,
    "snip_edges": True,
    "low_freq_hz": 20.0,
    "high_freq_hz": 0.0,  # 0: the Nyquist frequency
    "energy_floor": 1.0,
    "use_energy": False,
    "raw_energy": True,
    "use_log_fbank": True,
    "use_power": True,
    "htk_compat": False,
    "waveform_scale": 1.0,  # samples in [-1, 1], as FunASR feeds CAM++ (no 32768)
    "mean_normalisation": "subtract the segment's mean over time",
}
"""``torchaudio.compliance.kaldi.fbank``'s defaults with 80 mel bins, as FunASR's
``extract_feature`` calls it; the manifest records them, and an export made with
other settings is refused."""


def _fbank_options():
    import kaldi_native_fbank as knf

    settings = FBANK_SETTINGS
    options = knf.FbankOptions()
    frame = options.frame_opts
    frame.samp_freq = float(settings["sample_rate_hz"])
    frame.frame_length_ms = settings["frame_length_ms"]
    frame.frame_shift_ms = settings["frame_shift_ms"]
    frame.dither = settings["dither"]  # kaldi-native-fbank's default is 3e-5, torchaudio's 0
    frame.preemph_coeff = settings["preemphasis_coefficient"]
    frame.remove_dc_offset = settings["remove_dc_offset"]
    frame.window_type = settings["window_type"]
    frame.round_to_power_of_two = settings["round_to_power_of_two"]
    frame.snip_edges = settings["snip_edges"]
    options.mel_opts.num_bins = settings["num_mel_bins"]
    options.mel_opts.low_freq = settings["low_freq_hz"]
    options.mel_opts.high_freq = settings["high_freq_hz"]
    options.energy_floor = settings["energy_floor"]  # kaldi-native-fbank's default is 0, torchaudio's 1
    options.use_energy = settings["use_energy"]
    options.raw_energy = settings["raw_energy"]
    options.use_log_fbank = settings["use_log_fbank"]
    options.use_power = settings["use_power"]
    options.htk_compat = settings["htk_compat"]
    return options


def fbank_features(samples: np.ndarray, options=None) -> np.ndarray:
    """One segment's CAM++ input: (frames, 80) float32 log mel energies minus their mean over time.

    ``samples`` is float32 mono 16 kHz in [-1, 1]; ``options`` a prepared
    ``kaldi_native_fbank.FbankOptions`` (built from :data:`FBANK_SETTINGS` when None).
    """
    import kaldi_native_fbank as knf

    fbank = knf.OnlineFbank(options if options is not None else _fbank_options())
    fbank.accept_waveform(float(FBANK_SETTINGS["sample_rate_hz"]), np.ascontiguousarray(samples, np.float32))
    fbank.input_finished()
    frames = fbank.num_frames_ready
    if frames == 0:
        raise ValueError(f"{samples.size} samples give no fbank frame (at least 400 needed)")
    features = np.stack([fbank.get_frame(index) for index in range(frames)])
    # The mean in float64: a float32 running sum over thousands of frames would lose digits.
    return (features - features.mean(axis=0, dtype=np.float64, keepdims=True)).astype(np.float32)


def source_fingerprint(model_dir: Path) -> dict[str, dict]:
    """Size and SHA-256 of each file the CAM++ model directory needs (what the export came from)."""
    out = {}
    for alternatives in MODEL_SPECS[SPEAKER_MODEL].required_files:
        for relative in alternatives:
            path = Path(model_dir) / relative
            if path.is_file():
                digest = hashlib.sha256()
                with path.open("rb") as handle:
                    for block in iter(lambda: handle.read(1 << 20), b""):
                        digest.update(block)
                out[relative] = {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}
                break
    return out


def _export_hint(onnx_dir: Path, model_dir: Path | None) -> str:
    return (f"create it once (needs torch, no network) with `{EXPORT_COMMAND} --model-dir "
            f"{model_dir or '<CAM++ model dir>'} --out {onnx_dir}`")


def check_export(onnx_dir: Path, model_dir: Path | None = None) -> dict:
    """The manifest of the export in ``onnx_dir``, checked against ``model_dir`` when given.

    Raises ``FileNotFoundError`` when the export is missing and ``ValueError``
    when it was made from other model files or with other feature settings;
    both messages name the export command.
    """
    onnx_dir = Path(onnx_dir)
    for needed in (onnx_dir / MODEL_FILE, onnx_dir / MANIFEST):
        if not needed.is_file():
            raise FileNotFoundError(f"SPEAKER_RUNTIME=onnx needs {needed}; {_export_hint(onnx_dir, model_dir)}")
    manifest = json.loads((onnx_dir / MANIFEST).read_text(encoding="utf-8"))
    problems = []
    if manifest.get("features") != FBANK_SETTINGS:
        problems.append("it was made with other fbank settings")
    if model_dir is not None and manifest.get("source_files") != source_fingerprint(model_dir):
        problems.append(f"it was exported from other model files than {model_dir}'s")
    if problems:
        raise ValueError(f"the speaker ONNX export in {onnx_dir} is stale ({'; '.join(problems)}); "
                         f"export it again: {_export_hint(onnx_dir, model_dir)}")
    return manifest


class OnnxCamPlusModel:
    """Implements ``engine.EmbeddingModel`` on one shared onnxruntime session.

    ``InferenceSession.run`` is thread-safe; the engine calls it from one
    thread at a time anyway. Each segment's features are computed on their own
    (equal lengths give equal frame counts), so nothing is padded and a
    segment's embedding does not depend on its batch.
    """

    def __init__(self, path: Path, model_dir: Path | None, embedding_size: int, threads: int):
        from services.common.onnx import cpu_session

        # Pool threads sleep between calls instead of spinning: the workers share a small host's cores.
        self.session = cpu_session(path, threads, spin=False)
        self.path = path
        self.model_dir = model_dir
        self.embedding_size = embedding_size
        self._fbank_options = _fbank_options()

    def features(self, segments: np.ndarray) -> np.ndarray:
        """(batch, samples) float32 -> (batch, frames, 80) float32, as FunASR's extract_feature."""
        return np.stack([fbank_features(row, self._fbank_options) for row in segments])

    def embed(self, segments: np.ndarray) -> np.ndarray:
        if segments.ndim != 2 or segments.dtype != np.float32:
            raise TypeError("segments must be a (batch, samples) float32 array of equal-length segments")
        (embeddings,) = self.session.run(None, {"feats": self.features(segments)})
        return embeddings


def load_onnx_model(onnx_dir: Path, model_dir: Path | None, threads: int) -> OnnxCamPlusModel:
    """The export in ``onnx_dir`` (checked against ``model_dir``, see :func:`check_export`)."""
    started = time.monotonic()
    manifest = check_export(onnx_dir, model_dir)
    path = Path(onnx_dir) / MODEL_FILE
    model = OnnxCamPlusModel(path, model_dir, int(manifest["embedding_size"]), threads)
    log.info("speaker model loaded from %s on onnxruntime in %.1f s (%d-dim embeddings, %d threads)",
             path, time.monotonic() - started, model.embedding_size, threads)
    return model


def export_onnx(model_dir: Path, out_dir: Path, opset: int = 17) -> dict:
    """Export CAM++ in ``model_dir`` (loaded by FunASR, on torch) to ``out_dir``; the manifest.

    Needs torch, FunASR and onnx; reads only local files. Before anything is
    written the export is checked end to end: embeddings of this module
    (kaldi-native-fbank + onnxruntime) against the torch worker's (FunASR's
    features + the module) for a few segment lengths, at most 1e-3 apart. The
    files are written under temporary names and renamed into place last (the
    manifest last), so a worker never sees a half-written export.
    """
    import torch

    from services.common.fixture_marker import is_random_weights
    from services.common.offline import enable_offline_mode
    from services.speaker.engine import load_campplus_model

    enable_offline_mode()
    model_dir = Path(model_dir).absolute()
    campplus = load_campplus_model(model_dir)
    rng = np.random.default_rng(0)
    probe = (rng.standard_normal(int(2.5 * SAMPLE_RATE_HZ)) * 0.1).astype(np.float32)
    with torch.inference_mode():
        features = torch.from_numpy(fbank_features(probe))[None]

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path, partial = out_dir / MODEL_FILE, out_dir / (MODEL_FILE + ".partial")
    started = time.monotonic()
    with torch.inference_mode():
        torch.onnx.export(campplus.module, (features,), str(partial), dynamo=False, opset_version=opset,
                          input_names=["feats"], output_names=["embedding"],
                          dynamic_axes={"feats": {0: "batch", 1: "frames"}, "embedding": {0: "batch"}})
    exported_s = time.monotonic() - started

    onnx_model = OnnxCamPlusModel(partial, model_dir, campplus.embedding_size, threads=1)
    worst = 0.0
    for seconds, batch in ((0.2, 1), (1.0, 2), (4.3, 1)):  # 4.3 s: several 1 s CAM pooling segments
        segments = (rng.standard_normal((batch, int(seconds * SAMPLE_RATE_HZ))) * 0.1).astype(np.float32)
        mine, reference = onnx_model.embed(segments), campplus.embed(segments)
        mine = mine / np.linalg.norm(mine, axis=1, keepdims=True)
        reference = reference / np.linalg.norm(reference, axis=1, keepdims=True)
        worst = max(worst, float(np.abs(mine - reference).max()))
    del onnx_model
    # Random-noise probes, on which the float32 rounding of the two fbank implementations moves a
    # random-weight model's embeddings by up to ~1e-4 (on speech ~1e-6); a wrong feature setting or
    # a broken dynamic axis moves them by 1e-2 and more.
    if worst > 1e-3:
        partial.unlink()
        raise RuntimeError(f"the ONNX export disagrees with the torch model: unit embeddings differ by {worst:.2e}")

    manifest = {
        "model": model_dir.name,
        "embedding_size": campplus.embedding_size,
        "input": "feats: (batch, frames, 80) float32 fbank minus its mean over time",
        "output": "embedding: (batch, embedding_size) float32, not normalised",
        "features": FBANK_SETTINGS,
        "opset": opset,
        "torch": torch.__version__.split("+")[0],
        "source": str(model_dir),
        "source_files": source_fingerprint(model_dir),
        "random_weights": is_random_weights(model_dir),
        "max_abs_diff_vs_torch": float(f"{worst:.3g}"),
        "exported_s": round(exported_s, 1),
    }
    (out_dir / MANIFEST).unlink(missing_ok=True)  # an old manifest must not vouch for the new model
    partial.replace(path)
    manifest_partial = out_dir / (MANIFEST + ".partial")
    manifest_partial.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    manifest_partial.replace(out_dir / MANIFEST)
    log.info("exported %s in %.1f s (unit embeddings within %.1e of torch)", path, exported_s, worst)
    return manifest
