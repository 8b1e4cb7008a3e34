"""The emotion model on onnxruntime (``EMOTION_RUNTIME=onnx``): no torch in the worker.

The SpeechBrain classifier (wav2vec2 encoder, mean pooling, linear layer,
softmax) is exported once to ONNX by ``scripts/export_emotion_onnx.py``
(:func:`export_onnx`, which needs torch and SpeechBrain) next to the model:
``<model dir>/onnx/emotion-fp32.onnx`` and ``emotion-int8.onnx`` (dynamic
quantization: uint8 weights and activations, the fastest dynamic-int8 kernels
of onnxruntime on x86), plus ``emotion-onnx.json`` (labels and where the export
came from). The worker then loads only onnxruntime: measured on the full-size
model (bench/stack_bench.py --small-host), int8 on onnxruntime is 212 MiB
resident after load and 404 MiB at the peak with 4 streams, against 670 / 857
MiB for torch int8, and uses 0.052 instead of 0.070 CPU seconds per second of
speech-dense audio.

The exported graph computes exactly what ``classify_batch`` does for windows
without padding (the engine never pads, see engine.py): the wrapper's waveform
layer norm, the encoder, its output layer norm over time and features, the
mean over time (StatisticsPooling with eps=0 and full lengths), the output
layer and the softmax. It is written out with plain tensor operations because
SpeechBrain's own wrappers build padding masks from the input's shape, which
the exporter cannot keep dynamic.

Usage::

    export_onnx(model_dir, model_dir / "onnx")                 # once, with torch installed
    model = load_onnx_model(model_dir / "onnx", quantized=True, threads=1)
    engine = EmotionEngine(model, EmotionOptions())            # as with the SpeechBrain model
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

__all__ = ["ONNX_SUBDIR", "MANIFEST", "model_file", "OnnxEmotionModel", "load_onnx_model", "export_onnx",
           "EXPORT_COMMAND"]

log = logging.getLogger(__name__)

ONNX_SUBDIR = "onnx"
"""Default place of the exported files, inside the emotion model directory."""
MANIFEST = "emotion-onnx.json"
EXPORT_COMMAND = "python scripts/export_emotion_onnx.py"


def model_file(onnx_dir: Path, quantized: bool) -> Path:
    return Path(onnx_dir) / ("emotion-int8.onnx" if quantized else "emotion-fp32.onnx")


class OnnxEmotionModel:
    """Implements ``engine.WindowClassifier`` on one shared onnxruntime session.

    ``InferenceSession.run`` is thread-safe; the engine calls it from one
    thread at a time anyway.
    """

    def __init__(self, path: Path, labels: tuple[str, ...], quantized: bool, threads: int):
        from services.common.onnx import cpu_session

        # Pool threads sleep between calls instead of spinning: the workers share a small host's cores.
        self.session = cpu_session(path, threads, spin=False)
        self.path = path
        self.labels = labels
        # Dynamic quantization picks one activation scale per call: a window's result
        # would depend on the other windows of its call.
        self.batch_invariant = not quantized

    def predict(self, windows: np.ndarray) -> np.ndarray:
        if windows.ndim != 2 or windows.dtype != np.float32:
            raise TypeError("windows must be a (batch, samples) float32 array of equal-length windows")
        (probabilities,) = self.session.run(None, {"wavs": np.ascontiguousarray(windows)})
        probabilities = probabilities.astype(np.float64)
        return probabilities / probabilities.sum(axis=1, keepdims=True)


def load_onnx_model(onnx_dir: Path, quantized: bool, threads: int) -> OnnxEmotionModel:
    """The exported model in ``onnx_dir``; FileNotFoundError naming the export command if absent."""
    path = model_file(onnx_dir, quantized)
    manifest = Path(onnx_dir) / MANIFEST
    if not path.is_file() or not manifest.is_file():
        raise FileNotFoundError(
            f"EMOTION_RUNTIME=onnx needs {path} and {manifest}; create them once (needs torch, no "
            f"network) with `{EXPORT_COMMAND} --model-dir <emotion model dir> --out {onnx_dir}`")
    labels = tuple(json.loads(manifest.read_text(encoding="utf-8"))["labels"])
    started = time.monotonic()
    model = OnnxEmotionModel(path, labels, quantized, threads)
    log.info("emotion model loaded from %s on onnxruntime in %.1f s (labels %s, int8 %s)",
             path, time.monotonic() - started, ", ".join(labels), quantized)
    return model


def export_onnx(model_dir: Path, out_dir: Path, opset: int = 17) -> dict:
    """Export the SpeechBrain model in ``model_dir`` to ``out_dir`` (fp32 and int8); the manifest.

    Needs torch, SpeechBrain and onnx; reads only local files. The files are
    written under temporary names and renamed into place last, so a worker never
    sees a half-written model.
    """
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from services.common.fixture_marker import is_random_weights
    from services.common.offline import enable_offline_mode
    from services.emotion.speechbrain import load_speechbrain_model

    enable_offline_mode()
    sb = load_speechbrain_model(Path(model_dir))
    mods = sb.classifier.mods
    encoder = mods.wav2vec2
    if "avg_pool" in mods and getattr(mods.avg_pool, "return_std", False):
        raise ValueError("export supports mean pooling only (StatisticsPooling return_std=False)")

    class Classifier(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder.model
            self.output = mods.output_mlp

        def forward(self, wavs: torch.Tensor) -> torch.Tensor:
            if encoder.normalize_wav:  # F.layer_norm(wav, wav.shape[1:]) in SpeechBrain's wrapper
                wavs = (wavs - wavs.mean(1, keepdim=True)) / torch.sqrt(
                    wavs.var(1, keepdim=True, unbiased=False) + 1e-5)
            hidden = self.encoder(wavs).last_hidden_state
            if encoder.output_norm:  # F.layer_norm(out, out.shape[1:]): over time and features
                hidden = (hidden - hidden.mean((1, 2), keepdim=True)) / torch.sqrt(
                    hidden.var((1, 2), keepdim=True, unbiased=False) + 1e-5)
            return torch.softmax(self.output(hidden.mean(1)), dim=-1)

    net = Classifier().eval()
    probe = (np.random.default_rng(0).standard_normal((1, 32000)) * 0.1).astype(np.float32)
    with torch.inference_mode():
        reference = sb.predict(probe)
        mine = net(torch.from_numpy(probe)).numpy()
    if not np.allclose(reference, mine, atol=1e-4):
        raise RuntimeError(f"the export wrapper disagrees with SpeechBrain: {mine} vs {reference}")

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fp32, int8 = model_file(out_dir, False), model_file(out_dir, True)
    fp32_tmp, int8_tmp = fp32.with_suffix(".onnx.partial"), int8.with_suffix(".onnx.partial")
    started = time.monotonic()
    torch.onnx.export(net, (torch.from_numpy(probe),), str(fp32_tmp), dynamo=False, opset_version=opset,
                      input_names=["wavs"], output_names=["probabilities"],
                      dynamic_axes={"wavs": {0: "batch", 1: "samples"}, "probabilities": {0: "batch"}})
    quantize_dynamic(str(fp32_tmp), str(int8_tmp), weight_type=QuantType.QUInt8)
    manifest = {"labels": list(sb.labels), "source": str(Path(model_dir).absolute()), "opset": opset,
                "int8": "onnxruntime quantize_dynamic, QUInt8 weights",
                "random_weights": is_random_weights(Path(model_dir)),
                "exported_s": round(time.monotonic() - started, 1)}
    fp32_tmp.replace(fp32)
    int8_tmp.replace(int8)
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    log.info("exported %s and %s in %.1f s", fp32, int8, manifest["exported_s"])
    return manifest
