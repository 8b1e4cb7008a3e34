"""SpeechBrain's ``emotion-recognition-wav2vec2-IEMOCAP``, loaded offline, as a WindowClassifier.

The model is a wav2vec2 encoder, mean pooling over time and a linear layer to
four classes (neu, ang, hap, sad). It is loaded with SpeechBrain's own loader,
``foreign_class``, from a local directory only (see :func:`load_speechbrain_model`);
the windowing and batching around it are ``services/emotion/engine.py``'s.

torch and SpeechBrain are imported inside the functions, so the ONNX runtime
(``onnx_runtime.py``, ``EMOTION_RUNTIME=onnx``) serves without them.

Usage::

    model = load_speechbrain_model(Path("pretrained_models/emotion-recognition-wav2vec2-IEMOCAP"))
    probabilities = model.predict(windows)   # (batch, samples) float32 -> (batch, classes)
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np

from services.common import model_paths
from services.common.memory import trim_heap

if TYPE_CHECKING:
    import torch

__all__ = ["ModelNotFound", "SpeechBrainEmotionModel", "load_speechbrain_model", "probabilities_from_output"]

log = logging.getLogger(__name__)


class ModelNotFound(FileNotFoundError):
    """The model directory is missing or incomplete; the message names the path and the fix."""


def probabilities_from_output(out_prob: "torch.Tensor") -> np.ndarray:
    """Class probabilities from what ``classify_batch`` returned.

    The release's ``softmax`` hyperparameter (``Softmax()``, apply_log False)
    gives probabilities; with ``apply_log: True`` it gives log-probabilities.
    Softmax of log-probabilities (or of logits) is the distribution itself,
    so anything that is not already a distribution is passed through it.
    """
    import torch

    values = out_prob.detach().to(torch.float64).reshape(out_prob.shape[0], -1)
    sums = values.sum(dim=-1, keepdim=True)
    if bool((values >= 0).all()) and bool(torch.allclose(sums, torch.ones_like(sums), atol=1e-3)):
        return (values / sums).numpy()
    return torch.softmax(values, dim=-1).numpy()


class SpeechBrainEmotionModel:
    """The loaded SpeechBrain interface (read-only after loading)."""

    def __init__(self, classifier, model_dir: Path, labels: tuple[str, ...], quantized: bool = False):
        self.classifier = classifier
        self.model_dir = model_dir
        self.labels = labels
        self.batch_invariant = not quantized

    def predict(self, windows: np.ndarray) -> np.ndarray:
        import torch

        if windows.ndim != 2 or windows.dtype != np.float32:
            raise TypeError("windows must be a (batch, samples) float32 array of equal-length windows")
        with torch.inference_mode():
            wavs = torch.from_numpy(np.ascontiguousarray(windows))
            out_prob, _score, _index, _text = self.classifier.classify_batch(wavs, torch.ones(wavs.shape[0]))
            return probabilities_from_output(out_prob)


@contextlib.contextmanager
def _zero_copy_encoder_transfer() -> Iterator[None]:
    """While active, SpeechBrain loads Hugging Face encoder checkpoints memory-mapped.

    The default transfer (``torch_parameter_transfer``) reads all of
    ``wav2vec2.ckpt`` into memory (378 MB) and copies it into the encoder's
    parameters, which transformers has memory-mapped from
    ``wav2vec2-base/model.safetensors``: the copy turns those pages into
    private memory too, so loading peaks at base + checkpoint + copy and keeps
    the copy. Here the checkpoint is opened with ``mmap=True`` and its tensors
    become the parameters (``assign=True``): no copy, the weights are
    file-backed pages shared with the page cache, and the base weights are
    never read. Registered in SpeechBrain's own hook table (what
    ``register_checkpoint_hooks`` writes to) only for the duration of one load,
    then restored; remove once SpeechBrain loads checkpoints with mmap itself.
    """
    try:
        from speechbrain.integrations.huggingface.huggingface import HFTransformersInterface
    except ImportError:  # SpeechBrain < 1.1 layout
        from speechbrain.lobes.models.huggingface_transformers.huggingface import HFTransformersInterface
    from speechbrain.utils import checkpoints

    import torch

    def transfer(obj: "torch.nn.Module", path) -> None:
        try:
            state = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
        except RuntimeError as exc:  # e.g. a legacy (non-zip) checkpoint cannot be mapped
            log.info("cannot memory-map %s (%s); loading it the default way", path, exc)
            checkpoints.torch_parameter_transfer(obj, path)
            return
        state = checkpoints.hook_on_loading_state_dict_checkpoint(state)
        own = obj.state_dict()
        for key, value in state.items():
            if key in own and own[key].dtype != value.dtype:
                state[key] = value.to(own[key].dtype)  # assign would change the parameter's dtype
        incompatible = obj.load_state_dict(state, strict=False, assign=True)
        for key in incompatible.missing_keys:
            log.warning("%s has no value for %s; keeping the base weights", path, key)
        for key in incompatible.unexpected_keys:
            log.warning("%s: ignoring unexpected key %s", path, key)

    hooks = checkpoints.DEFAULT_TRANSFER_HOOKS
    previous = hooks.get(HFTransformersInterface)
    hooks[HFTransformersInterface] = transfer
    try:
        yield
    finally:
        if previous is None:
            hooks.pop(HFTransformersInterface, None)
        else:
            hooks[HFTransformersInterface] = previous


def load_speechbrain_model(model_dir: Path, quantize_int8: bool = False) -> SpeechBrainEmotionModel:
    """Load the classifier from ``model_dir`` with ``foreign_class``, offline.

    Everything comes from ``model_dir``: the hyperparameters' hub names are
    overridden (``wav2vec2_hub`` -> ``<model_dir>/wav2vec2-base``,
    ``pretrained_path`` -> ``<model_dir>``), files are used in place
    (``LocalStrategy.NO_LINK``, network disallowed), and the ``savedir``
    SpeechBrain insists on is a fresh temporary directory removed afterwards,
    so no symlink or cache ever points at an old location: a model directory
    copied elsewhere loads the same way. The user's ``hyperparams.yaml`` is not
    modified. The caller must have switched the hub clients offline before
    speechbrain/transformers were first imported (``HF_HUB_OFFLINE``).

    ``quantize_int8`` makes every ``nn.Linear`` (wav2vec2's attention and
    feed-forward layers, the output layer) dynamic int8; the convolutional
    feature encoder stays float. See ``services/common/quantize.py``.
    """
    model_dir = Path(model_dir).absolute()
    missing = model_paths.missing_files(model_dir, model_paths.MODEL_SPECS["speechbrain_emotion"])
    if missing:
        raise ModelNotFound(
            f"emotion model directory {model_dir} is incomplete; missing: {', '.join(missing)}. Fetch it with "
            f"`{model_paths.download_command(['speechbrain_emotion'])}` (on a host with network access) "
            "and copy it here.")

    from speechbrain.inference.interfaces import foreign_class
    from speechbrain.utils.fetching import FetchConfig, LocalStrategy
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    started = time.monotonic()
    savedir = Path(tempfile.mkdtemp(prefix="emotion-speechbrain-"))
    try:
        with _zero_copy_encoder_transfer():
            classifier = foreign_class(
                source=str(model_dir),
                pymodule_file="custom_interface.py",
                classname="CustomEncoderWav2vec2Classifier",
                hparams_file="hyperparams.yaml",
                savedir=str(savedir),
                overrides={
                    "wav2vec2_hub": str(model_dir / "wav2vec2-base"),
                    "pretrained_path": str(model_dir),
                    # Relative in the release ("wav2vec2_checkpoints", i.e. the cwd);
                    # unused with a local hub directory, but never let it be the cwd.
                    "wav2vec2": {"save_path": str(savedir / "wav2vec2_checkpoints")},
                },
                local_strategy=LocalStrategy.NO_LINK,
                fetch_config=FetchConfig(allow_network=False),
                run_opts={"device": "cpu"},
            )
    finally:
        shutil.rmtree(savedir, ignore_errors=True)

    encoder = classifier.hparams.label_encoder
    labels = tuple(encoder.ind2lab[index] for index in sorted(encoder.ind2lab))
    n_outputs = getattr(classifier.hparams, "out_n_neurons", len(labels))
    encoder.expect_len(int(n_outputs))  # label_encoder.txt must match the output layer
    pool = classifier.mods["avg_pool"] if "avg_pool" in classifier.mods else None
    if pool is not None and hasattr(pool, "eps"):
        # StatisticsPooling adds Gaussian noise of 1e-5..9e-5 to the pooled mean on
        # every call, in eval mode too (min/max-normalised over the whole batch).
        # It moves probabilities by ~1e-5 but makes a result differ between calls
        # and with its batch; eps=0 zeroes it, so the same audio gives the same answer.
        pool.eps = 0.0
    if quantize_int8:
        from services.common.quantize import quantize_linear_int8

        quantize_linear_int8(classifier.mods)
    trim_heap()
    log.info("emotion model loaded from %s in %.1f s (labels %s, int8 %s)",
             model_dir, time.monotonic() - started, ", ".join(labels), quantize_int8)
    return SpeechBrainEmotionModel(classifier, model_dir, labels, quantized=quantize_int8)
