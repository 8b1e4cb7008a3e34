"""Streaming voice activity detection: one shared model, one state per stream.

Silero's own ``VADIterator`` (and its ``OnnxWrapper``) keep the RNN state on
the model object (``model.reset_states()``), so two streams sharing one model
corrupt each other. Here the network is called statelessly
(``(x_with_context, state) -> (prob, state)``) and every stream owns its
``state``/``context`` arrays in a :class:`SileroStream`.

The worker runs the ONNX export bundled with the silero-vad package on
onnxruntime (:class:`OnnxSileroModel`), so it never imports torch: the worker
stays near 120 MiB resident (bench/vad_memory.py), and a window costs about a
sixth of the TorchScript model's CPU, with speech probabilities within 2e-5 of it (tests/test_vad_engine.py checks that
segments are identical on every shared clip). The TorchScript runtime stays
available as the reference in :mod:`services.vad.silero_torch`.

The segmentation rule (threshold with a hysteresis of 0.15, minimum speech,
minimum silence, padding, maximum length) follows ``get_speech_timestamps`` of
the silero-vad package, re-implemented incrementally because that function
only works on a whole recording and ``VADIterator`` has no minimum-speech or
maximum-length handling.

Usage::

    model = load_silero(project_root)    # ONNX on onnxruntime, no torch
    stream = SileroStream(model, VadOptions())
    for chunk in chunks:                 # float32 mono 16 kHz, any size
        events += stream.accept(chunk)
    events += stream.flush()
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from services.common.audio import SAMPLE_RATE_HZ, check_contract, ms_to_samples, samples_to_ms
from services.common.errors import InvalidInput
from services.common.limits import check_vad_overrides

__all__ = [
    "VadOptions",
    "SpeechStarted",
    "SpeechEnded",
    "VadEvent",
    "VadStream",
    "SileroModel",
    "OnnxSileroModel",
    "SileroStream",
    "silero_onnx_path",
    "load_silero",
]

log = logging.getLogger(__name__)

WINDOW_SAMPLES = 512  # Silero's fixed window at 16 kHz (32 ms)


@dataclass(frozen=True)
class VadOptions:
    """Segmentation parameters; a stream may override any of them."""

    threshold: float = 0.5
    """Speech probability at or above which a frame is speech; silence is below threshold - 0.15."""
    min_speech_duration_ms: int = 250
    """Speech shorter than this is dropped (no events)."""
    min_silence_duration_ms: int = 250
    """Silence that ends a segment."""
    speech_pad_ms: int = 30
    """Padding added before and after each segment (never overlapping the previous one)."""
    max_speech_duration_s: float = 30.0
    """Longer segments are cut, at the last pause of >= 98 ms if there was one."""

    def __post_init__(self) -> None:
        # The same bounds the gateway checks (a worker may be called directly); non-finite
        # or huge values would otherwise crash the segmenter or hold one segment forever.
        check_vad_overrides(threshold=self.threshold, min_speech_duration_ms=self.min_speech_duration_ms,
                            min_silence_duration_ms=self.min_silence_duration_ms,
                            speech_pad_ms=self.speech_pad_ms,
                            max_speech_duration_s=self.max_speech_duration_s, prefix="")
        if not 0.0 < self.threshold < 1.0:
            raise InvalidInput(f"threshold must be between 0 and 1 (exclusive), got {self.threshold:g}")

    def with_overrides(self, **overrides: float) -> "VadOptions":
        """Options with every non-zero override applied (zero means "keep default")."""
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v})


@dataclass(frozen=True)
class SpeechStarted:
    segment_id: int
    start_ms: int


@dataclass(frozen=True)
class SpeechEnded:
    segment_id: int
    start_ms: int
    end_ms: int


VadEvent = SpeechStarted | SpeechEnded


class VadStream(Protocol):
    """Per-stream detector: feed audio, get events; ``flush`` at end of stream."""

    def accept(self, samples: np.ndarray) -> list[VadEvent]: ...

    def flush(self) -> list[VadEvent]: ...

    def progress(self) -> tuple[int, int]:
        """(samples processed, ``keep_from``): no segment reported from now on starts
        before sample ``keep_from``, so a client may drop audio before it."""
        ...


class _Segmenter:
    """Turns per-window speech probabilities into start/end events (sample units)."""

    _MIN_PAUSE_FOR_CUT_SAMPLES = ms_to_samples(98)

    def __init__(self, options: VadOptions, window_samples: int):
        self.opts = options
        self.window = window_samples
        self.neg_threshold = max(options.threshold - 0.15, 0.01)
        self.min_speech = ms_to_samples(options.min_speech_duration_ms)
        self.min_silence = ms_to_samples(options.min_silence_duration_ms)
        self.pad = ms_to_samples(options.speech_pad_ms)
        self.max_speech = int(options.max_speech_duration_s * SAMPLE_RATE_HZ)
        self.next_id = 0
        self.prev_end = 0          # end of the last emitted segment
        self.triggered = False
        self.onset = 0             # first speech sample of the open segment
        self.start = 0             # padded start of the open segment
        self.started = False       # SpeechStarted emitted for the open segment
        self.silence_start = 0     # start of the current silence run, 0 if none
        self.last_speech_end = 0
        self.cut_candidate: tuple[int, int] | None = None  # (pause start, pause end)

    def _open(self, onset: int) -> None:
        self.triggered, self.started = True, False
        self.onset = onset
        self.start = max(onset - self.pad, self.prev_end, 0)
        self.silence_start = 0
        self.cut_candidate = None

    def _close(self, end: int, events: list[VadEvent]) -> None:
        end = max(end, self.start)
        if self.last_speech_end - self.onset >= self.min_speech:
            if not self.started:
                events.append(SpeechStarted(self.next_id, samples_to_ms(self.start)))
            events.append(SpeechEnded(self.next_id, samples_to_ms(self.start), samples_to_ms(end)))
            self.next_id += 1
            self.prev_end = end
        self.triggered = False
        self.silence_start = 0

    def push(self, prob: float, window_end: int) -> list[VadEvent]:
        events: list[VadEvent] = []
        window_start = window_end - self.window
        if prob >= self.opts.threshold:
            if not self.triggered:
                self._open(window_start)
            elif self.silence_start:
                if window_start - self.silence_start >= self._MIN_PAUSE_FOR_CUT_SAMPLES:
                    self.cut_candidate = (self.silence_start, window_start)
                self.silence_start = 0
            self.last_speech_end = window_end
            if not self.started and window_end - self.onset >= self.min_speech:
                events.append(SpeechStarted(self.next_id, samples_to_ms(self.start)))
                self.started = True
        elif self.triggered and prob < self.neg_threshold:
            if not self.silence_start:
                self.silence_start = window_start
            if window_end - self.silence_start >= self.min_silence:
                self._close(min(self.silence_start + self.pad, window_end), events)

        if self.triggered and window_end - self.start > self.max_speech:
            if self.cut_candidate is not None:
                pause_start, pause_end = self.cut_candidate
                self._close(pause_start, events)
                self._open(pause_end)
                self.start = pause_end
            else:
                self._close(window_end, events)
                self._open(window_end)
                self.start = window_end
            self.last_speech_end = window_end
        return events

    def keep_from(self, processed: int) -> int:
        """Earliest sample a segment reported later can start at, after ``processed`` samples.

        An open segment keeps its (padded) start. Otherwise the next onset is the start of
        a window not yet pushed: at ``processed`` or later, except the zero-filled last
        window of :meth:`SileroStream.flush`, which may begin up to a window earlier; the
        segment then starts ``pad`` before its onset, but never before ``prev_end``.
        """
        if self.triggered:
            return self.start
        return max(processed - self.window - self.pad, self.prev_end, 0)

    def flush(self, total_samples: int) -> list[VadEvent]:
        events: list[VadEvent] = []
        if self.triggered:
            end = self.silence_start + self.pad if self.silence_start else total_samples
            self._close(min(end, total_samples), events)
        return events


class SileroModel(Protocol):
    """A shared, read-only Silero network called statelessly; streams own the state."""

    source: str

    def initial_state(self) -> tuple[Any, Any]:
        """(RNN state, context) for a new stream."""
        ...

    def step(self, window: np.ndarray, state: Any, context: Any) -> tuple[float, Any, Any]:
        """One 512-sample float32 window -> (speech probability, new state, new context)."""
        ...


SILERO_CONTEXT_SAMPLES = 64
"""Samples of the previous window Silero (v5+) prepends to each window at 16 kHz."""


class OnnxSileroModel:
    """Silero's ONNX export on onnxruntime: what ``OnnxWrapper.__call__`` does, minus its state.

    ``InferenceSession.run`` may be called from several threads at once, so one
    session serves every stream. Each call gets one intra-op thread: a 512-sample
    window is far too small to split, and parallelism comes from running
    streams in the servicer's threads.
    """

    def __init__(self, onnx_path: Path, source: str):
        from services.common.onnx import cpu_session

        self.session = cpu_session(onnx_path, threads=1)
        self.context_samples = SILERO_CONTEXT_SAMPLES
        self._sr = np.array(SAMPLE_RATE_HZ, dtype=np.int64)
        self.source = source

    def initial_state(self) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros((2, 1, 128), dtype=np.float32), np.zeros((1, self.context_samples), dtype=np.float32)

    def step(self, window: np.ndarray, state: np.ndarray, context: np.ndarray):
        x = np.concatenate([context, window.reshape(1, -1)], axis=1)
        prob, state = self.session.run(None, {"input": x, "state": state, "sr": self._sr})
        return float(prob[0, 0]), state, x[:, -self.context_samples:]


SILERO_ONNX_IN_REPO = Path("src") / "silero_vad" / "data" / "silero_vad.onnx"
"""Where a silero-vad repository (``<root>/silero-vad``) keeps the ONNX export."""


def silero_onnx_path(project_root: Path) -> tuple[Path, str]:
    """(ONNX file, description): ``<root>/silero-vad`` first, else the pip package's.

    The package is located without importing it: ``import silero_vad`` imports torch.
    """
    local = project_root / "silero-vad" / SILERO_ONNX_IN_REPO
    if local.is_file():
        return local, f"local repo {local.parents[3]}"
    import importlib.util

    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("Silero VAD not found: neither silero-vad/ at the project root nor the "
                                "silero-vad package (pip install -r requirements.txt)")
    bundled = Path(next(iter(spec.submodule_search_locations))) / "data" / "silero_vad.onnx"
    return bundled, "silero-vad pip package (bundled model; silero-vad/ not found at project root)"


def load_silero(project_root: Path) -> OnnxSileroModel:
    """The Silero ONNX model on onnxruntime (see :func:`silero_onnx_path`); never touches the network."""
    path, source = silero_onnx_path(project_root)
    model = OnnxSileroModel(path, f"{source}, onnxruntime")
    log.info("Silero VAD loaded from %s", model.source)
    return model


class SileroStream:
    """Per-stream Silero state: RNN state, context, unprocessed tail, segmenter."""

    def __init__(self, model: SileroModel, options: VadOptions):
        self.model = model
        self.state, self.context = model.initial_state()
        self.segmenter = _Segmenter(options, WINDOW_SAMPLES)
        self.pending = np.zeros(0, dtype=np.float32)
        self.consumed = 0  # samples fed to the model so far

    def accept(self, samples: np.ndarray) -> list[VadEvent]:
        check_contract(samples)
        buffer = np.concatenate([self.pending, samples]) if self.pending.size else samples
        full = buffer.size // WINDOW_SAMPLES * WINDOW_SAMPLES
        self.pending = buffer[full:].copy()
        events: list[VadEvent] = []
        if full:
            windows = np.ascontiguousarray(buffer[:full]).reshape(-1, WINDOW_SAMPLES)
            for window in windows:
                prob, self.state, self.context = self.model.step(window, self.state, self.context)
                self.consumed += WINDOW_SAMPLES
                events += self.segmenter.push(prob, self.consumed)
        return events

    def progress(self) -> tuple[int, int]:
        return self.consumed, self.segmenter.keep_from(self.consumed)

    def flush(self) -> list[VadEvent]:
        total = self.consumed + self.pending.size
        events: list[VadEvent] = []
        if self.pending.size:
            tail = np.zeros(WINDOW_SAMPLES, dtype=np.float32)
            tail[: self.pending.size] = self.pending
            prob, self.state, self.context = self.model.step(tail, self.state, self.context)
            self.pending = np.zeros(0, dtype=np.float32)
            events += self.segmenter.push(prob, min(self.consumed + WINDOW_SAMPLES, total))
            self.consumed = total
        return events + self.segmenter.flush(total)
