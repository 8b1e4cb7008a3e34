"""FSMN-VAD backend for the VAD worker: one shared FunASR model, one cache per stream.

FunASR's ``FsmnVADStreaming`` keeps a stream's whole state in the ``cache``
dict passed to ``generate(input=chunk, cache=cache, is_final=..., chunk_size=ms)``,
so each :class:`FsmnStream` owns its cache and all streams share one model.
The model object is still not re-entrant (``generate`` rewrites the
``AutoModel``'s kwargs and the model's ``vad_opts`` on every call), so calls
are serialised by a lock; the model is small and fast, so the lock costs little.

Audio arrives in any chunk size and is fed to FSMN in whole blocks of
``FSMN_BLOCK_MS`` (the last one at flush), so events do not depend on how the
client chunks its audio.

How :class:`~services.vad.engine.VadOptions` apply:

* ``min_silence_duration_ms`` -> FSMN ``max_end_silence_time`` (trailing
  silence that ends a segment; FunASR's duration-dependent silence schedule
  is switched off by passing it explicitly).
* ``max_speech_duration_s`` -> FSMN ``max_single_segment_time``.
* ``min_speech_duration_ms``: applied here. A segment that ends shorter than
  this is dropped, and ``SpeechStarted`` is held back until the segment has
  lasted ``min_speech_duration_ms + min_silence_duration_ms`` (by then FSMN
  would have reported the end of a shorter segment).
* ``threshold`` and ``speech_pad_ms`` have no FSMN equivalent and are ignored:
  FSMN decides speech with its own speech/noise posterior ratio and pads with
  its built-in look-back/look-ahead.

Usage (the VAD server does this)::

    factory = load_fsmn_backend(model_settings)   # None when the model is absent
    stream = factory(VadOptions())
    events = stream.accept(chunk) + stream.flush()
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from services.common.audio import SAMPLE_RATE_HZ, check_contract, ms_to_samples, samples_to_ms
from services.common.settings import ModelSettings
from services.funasr.automodel import load_automodel
from services.funasr.fsmn_guards import guard_fsmn_scores, set_max_segment_ms
from services.vad.engine import SpeechEnded, SpeechStarted, VadEvent, VadOptions

__all__ = ["FSMN_BLOCK_MS", "FsmnModel", "FsmnStream", "load_fsmn_model", "load_fsmn_backend"]

log = logging.getLogger(__name__)

FSMN_BLOCK_MS = 200
_BLOCK_SAMPLES = FSMN_BLOCK_MS * SAMPLE_RATE_HZ // 1000
FSMN_START_LOOKBACK_MS = 2000
"""Bound on how far before the audio fed so far FSMN can date a new segment's start."""


def load_fsmn_model(model_dir: Path, threads: int) -> Any:
    """FunASR ``AutoModel`` for a local FSMN-VAD directory, guarded (no hub access)."""
    model = load_automodel(model_dir, threads, lean=False)
    guard_fsmn_scores(model)
    return model


class FsmnModel:
    """The shared FSMN-VAD model and the lock that serialises its calls."""

    def __init__(self, automodel: Any, source: str):
        self.automodel = automodel
        self.source = source
        self.lock = threading.Lock()

    def step(self, samples: np.ndarray, cache: dict, is_final: bool, options: VadOptions) -> list:
        """Feed whole blocks (or the final remainder) of one stream; FunASR's raw segments."""
        max_end_silence_ms = int(options.min_silence_duration_ms)
        with self.lock:
            # vad_opts is shared by every stream: set this stream's values for this call.
            set_max_segment_ms(self.automodel, options.max_speech_duration_s * 1000)
            self.automodel.model.vad_opts.max_end_silence_time = max_end_silence_ms
            result = self.automodel.generate(
                input=samples, cache=cache, is_final=is_final, chunk_size=FSMN_BLOCK_MS,
                max_end_silence_time=max_end_silence_ms)
        return result[0]["value"] if result else []


class FsmnStream:
    """Per-stream FSMN state: FunASR cache, pending samples, open segment, ids."""

    def __init__(self, model: FsmnModel, options: VadOptions):
        self.model = model
        self.options = options
        self.cache: dict = {}
        self.pending = np.zeros(0, dtype=np.float32)
        self.fed = 0             # samples given to FSMN
        self.next_id = 0
        self.open_start_ms: int | None = None
        self.started = False     # SpeechStarted emitted for the open segment
        self.prev_end_ms = 0
        self.finished = False
        self._hold_ms = options.min_speech_duration_ms + options.min_silence_duration_ms

    def accept(self, samples: np.ndarray) -> list[VadEvent]:
        check_contract(samples)
        if self.finished:
            raise RuntimeError("FsmnStream.accept after flush")
        buffer = np.concatenate([self.pending, samples]) if self.pending.size else samples
        # Keep at least one sample back so flush always has audio to mark final.
        blocks = max(0, (buffer.size - 1) // _BLOCK_SAMPLES)
        take = blocks * _BLOCK_SAMPLES
        self.pending = buffer[take:].copy()
        events: list[VadEvent] = []
        if take:
            raw = self.model.step(buffer[:take], self.cache, False, self.options)
            self.fed += take
            events += self._convert(raw)
        return events + self._maybe_start()

    def progress(self) -> tuple[int, int]:
        """FSMN reports a segment's start once enough speech frames confirm it, dated back
        to where speech began (its look-back, window and decision delay, under a second
        with FunASR's defaults); ``FSMN_START_LOOKBACK_MS`` bounds that generously."""
        if self.open_start_ms is not None:
            return self.fed, ms_to_samples(self.open_start_ms)
        keep_ms = max(samples_to_ms(self.fed) - FSMN_START_LOOKBACK_MS, self.prev_end_ms, 0)
        return self.fed, ms_to_samples(keep_ms)

    def flush(self) -> list[VadEvent]:
        if self.finished:
            return []
        self.finished = True
        events: list[VadEvent] = []
        total_ms = samples_to_ms(self.fed + self.pending.size)
        if self.pending.size:
            raw = self.model.step(self.pending, self.cache, True, self.options)
            self.fed += self.pending.size
            self.pending = np.zeros(0, dtype=np.float32)
            events += self._convert(raw, total_ms)
        if self.open_start_ms is not None:  # FSMN left it open: close at the end of audio
            events += self._end(total_ms, total_ms)
        return events

    # FunASR streaming output: [beg, -1] start, [-1, end] end, [beg, end] both.
    def _convert(self, raw: list, total_ms: int | None = None) -> list[VadEvent]:
        events: list[VadEvent] = []
        limit_ms = samples_to_ms(self.fed) if total_ms is None else total_ms
        for begin_ms, end_ms in raw:
            if begin_ms >= 0:
                if self.open_start_ms is not None:  # a start without an end: close the old one
                    events += self._end(int(begin_ms), limit_ms)
                self.open_start_ms = max(int(begin_ms), self.prev_end_ms)
                self.started = False
            if end_ms >= 0 and self.open_start_ms is not None:
                events += self._end(int(end_ms), limit_ms)
        return events

    def _maybe_start(self) -> list[VadEvent]:
        if self.open_start_ms is None or self.started:
            return []
        if samples_to_ms(self.fed) - self.open_start_ms >= self._hold_ms:
            self.started = True
            return [SpeechStarted(self.next_id, self.open_start_ms)]
        return []

    def _end(self, end_ms: int, limit_ms: int) -> list[VadEvent]:
        start = self.open_start_ms
        assert start is not None
        end = min(end_ms, limit_ms)
        self.open_start_ms = None
        events: list[VadEvent] = []
        long_enough = end - start >= self.options.min_speech_duration_ms and end > start
        if self.started or long_enough:
            end = max(end, start + 1) if end <= start else end
            if not self.started:
                events.append(SpeechStarted(self.next_id, start))
            events.append(SpeechEnded(self.next_id, start, end))
            self.next_id += 1
            self.prev_end_ms = end
        self.started = False
        return events


def load_fsmn_backend(models: ModelSettings) -> Callable[[VadOptions], FsmnStream] | None:
    """A ``VadOptions -> FsmnStream`` factory, or None when FSMN-VAD is not installed."""
    from services.common.model_paths import resolve_models
    from services.common.offline import enable_offline_mode

    resolved = resolve_models(Path(models.project_root), models.model_cache_dir).fsmn_vad
    if not resolved.complete or resolved.path is None:
        log.info("FSMN-VAD backend not available (%s: missing %s)", resolved.path,
                 ", ".join(resolved.missing) or "location ambiguous")
        return None
    enable_offline_mode()
    automodel = load_fsmn_model(resolved.path, threads=torch.get_num_threads())
    from services.common.fixture_marker import is_random_weights

    if is_random_weights(resolved.path):
        log.warning("FSMN-VAD at %s holds random weights (test fixture): its segments are meaningless",
                    resolved.path)
    model = FsmnModel(automodel, str(resolved.path))
    log.info("FSMN-VAD loaded from %s", resolved.path)
    return lambda options: FsmnStream(model, options)
