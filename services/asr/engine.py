"""Speech recognition of finished segments: Paraformer (+ punctuation) and SenseVoice.

The engine takes 1-D float32 16 kHz segments (the gateway has already cut the
stream with a VAD) and returns :class:`Transcript` dataclasses. It never
imports grpc. It is *not* thread-safe: FunASR's ``AutoModel.generate`` keeps
per-call state on the model object, so every call must come from one thread
(the server's :class:`~services.common.batching.BatchWorker`).

Two modes, chosen per request among those the engine was loaded with:

* ``paraformer``: SeACo-Paraformer-large decodes, CT-Transformer punctuates
  each segment's text, and FSMN-VAD cuts segments longer than
  ``max_segment_s`` into pieces whose timestamps are shifted back by their
  offsets. The three are separate ``AutoModel`` instances: FunASR's combined
  pipeline would re-run VAD on every already-segmented input. Hotwords go to
  SeACo-Paraformer's ``hotword=`` (space-separated words).
* ``sensevoice``: SenseVoiceSmall with a language hint and ITN switch; its
  ``<|lang|><|emotion|><|event|><|itn|>`` tags become typed fields
  (:mod:`services.asr.sensevoice_tags`) and never reach the text.

Each mode is one small strategy object (``_ParaformerMode``, ``_SenseVoiceMode``)
holding its models; what both share (cutting long segments, skipping silence,
padded batch decoding) is ``_Pieces``. The request and result types are in
``services/asr/requests.py``. Requests in one :meth:`AsrEngine.transcribe_batch`
call must share :meth:`AsrRequest.batch_key` (mode, hotwords / language, ITN);
their segments are decoded in one padded model call.

Usage::

    engine = load_engine(ModelDirs(paraformer=..., fsmn_vad=..., ct_punc=...),
                         modes=("paraformer",), options=AsrOptions(threads=2))
    engine.warm_up()
    [result] = engine.transcribe_batch([AsrRequest(samples, mode="paraformer")])
    result.text, result.tokens[0].start_ms
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import numpy as np
import torch

from services.common.memory import memory_mb, trim_heap
from services.asr.requests import (
    MODES,
    PARAFORMER,
    SENSEVOICE,
    AsrOptions,
    AsrRequest,
    ModelDirs,
    TokenTime,
    Transcript,
)
from services.asr.sensevoice_tags import parse_sensevoice, strip_tags
from services.common.audio import SAMPLE_RATE_HZ, check_contract, peak_dbfs
from services.common.errors import InvalidInput, WrongMode
from services.common.fixture_marker import is_random_weights
from services.common.model_paths import MODEL_SPECS, required_models
from services.funasr.automodel import load_automodel
from services.funasr.fsmn_guards import guard_fsmn_scores, set_max_segment_ms

__all__ = ["AsrEngine", "load_engine"]

log = logging.getLogger(__name__)

_SAMPLES_PER_MS = SAMPLE_RATE_HZ // 1000
_MAX_PIECES_PER_CALL = 8  # bounds padding waste and peak memory of one model call

# --------------------------------------------------------------------------- loading


# --------------------------------------------------------------------------- helpers


@dataclass(frozen=True)
class _Piece:
    request: int
    offset_samples: int
    samples: np.ndarray = field(repr=False)


def _fixed_windows(samples: np.ndarray, window_samples: int) -> list[tuple[int, np.ndarray]]:
    count = max(1, math.ceil(samples.size / window_samples))
    size = math.ceil(samples.size / count)  # equal pieces, none tiny
    return [(start, samples[start:start + size]) for start in range(0, samples.size, size)]


def _join_texts(texts: Sequence[str]) -> str:
    return strip_tags(" ".join(t for t in texts if t))


def _tokens_from_result(result: dict, offset_ms: int, duration_ms: int,
                        words: Sequence[str] | None = None) -> list[TokenTime]:
    stamps = result.get("timestamp") or []
    if words is None:
        words = [w for w in str(result.get("text", "")).split(" ") if w]
    if len(words) != len(stamps):
        log.debug("timestamps dropped: %d tokens, %d stamps", len(words), len(stamps))
        return []
    tokens = []
    for word, stamp in zip(words, stamps):
        start = min(max(int(stamp[0]), 0), duration_ms)
        end = min(max(int(stamp[1]), start), duration_ms)
        tokens.append(TokenTime(word, start + offset_ms, end + offset_ms))
    return tokens


def _monotonic(tokens: list[TokenTime]) -> tuple[TokenTime, ...]:
    fixed: list[TokenTime] = []
    last_start = 0
    for token in tokens:
        start = max(token.start_ms, last_start)
        fixed.append(TokenTime(token.token, start, max(token.end_ms, start)))
        last_start = start
    return tuple(fixed)


# --------------------------------------------------------------------------- pieces


class _Pieces:
    """Cutting segments into decodable pieces and decoding pieces in padded batches.

    Shared by both modes: a segment longer than ``max_segment_s`` is cut by
    FSMN-VAD where loaded (else into equal windows), silent or too short pieces
    are skipped, and up to ``_MAX_PIECES_PER_CALL`` pieces go into one model call.
    """

    def __init__(self, options: AsrOptions, vad: Any = None):
        self.options = options
        self.vad = vad
        self.cap_samples = int(options.max_segment_s * SAMPLE_RATE_HZ)
        self.min_samples = options.min_segment_ms * SAMPLE_RATE_HZ // 1000

    def split(self, samples: np.ndarray, cap_samples: int | None = None) -> list[tuple[int, np.ndarray]]:
        """(offset, piece) pairs covering a segment; pieces are at most the cap long."""
        cap = cap_samples or self.cap_samples
        if samples.size <= cap:
            return [(0, samples)]
        if self.vad is None:
            return _fixed_windows(samples, cap)
        set_max_segment_ms(self.vad, cap * 1000 // SAMPLE_RATE_HZ)
        found = self.vad.generate(input=samples)[0]["value"]
        pieces: list[tuple[int, np.ndarray]] = []
        for start_ms, end_ms in found:
            start = max(0, int(start_ms) * SAMPLE_RATE_HZ // 1000)
            end = min(samples.size, int(end_ms) * SAMPLE_RATE_HZ // 1000)
            if end <= start:
                continue
            for offset, piece in _fixed_windows(samples[start:end], cap):
                pieces.append((start + offset, piece))
        if not pieces:  # the gateway's VAD heard speech; do not drop it on FSMN's word
            return _fixed_windows(samples, cap)
        return pieces

    def audible(self, piece: np.ndarray) -> bool:
        return piece.size >= self.min_samples and peak_dbfs(piece) >= self.options.silence_peak_dbfs

    def of(self, requests: Sequence[AsrRequest]) -> list[_Piece]:
        pieces = []
        for index, request in enumerate(requests):
            if not self.audible(request.samples):
                continue
            for offset, piece in self.split(request.samples):
                if self.audible(piece):
                    pieces.append(_Piece(index, offset, piece))
        return pieces

    @staticmethod
    def decode(model: Any, pieces: list[_Piece], **cfg: Any) -> list[dict]:
        """One result dict per piece, decoding up to _MAX_PIECES_PER_CALL pieces per call."""
        # Longest first so each padded call holds similar lengths; results go back in order.
        order = sorted(range(len(pieces)), key=lambda i: -pieces[i].samples.size)
        results: list[dict] = [{"text": ""}] * len(pieces)
        for begin in range(0, len(order), _MAX_PIECES_PER_CALL):
            chunk = order[begin:begin + _MAX_PIECES_PER_CALL]
            inputs = [pieces[i].samples for i in chunk]
            out = model.generate(input=inputs, batch_size=len(inputs), **cfg)
            if not out:
                # Paraformer returns no result at all when no input of the call fired a token.
                out = [{"text": ""} for _ in inputs]
            elif len(out) != len(inputs):
                log.warning("model returned %d results for %d inputs; decoding one by one",
                            len(out), len(inputs))
                out = [(model.generate(input=x, batch_size=1, **cfg) or [{"text": ""}])[0]
                       for x in inputs]
            for i, result in zip(chunk, out):
                results[i] = result
        return results


# --------------------------------------------------------------------------- modes


class _ParaformerMode:
    """SeACo-Paraformer decodes (with hotwords), CT-Transformer punctuates each request's text."""

    name = PARAFORMER

    def __init__(self, asr: Any, punc: Any):
        self.asr, self.punc = asr, punc
        self.automodels = {"paraformer": asr, "ct_punc": punc}

    def transcribe(self, requests: Sequence[AsrRequest], pieces: _Pieces) -> list[Transcript | Exception]:
        hotwords = requests[0].hotwords
        cut = pieces.of(requests)
        cfg: dict[str, Any] = {"hotword": " ".join(hotwords)} if hotwords else {}
        decoded = pieces.decode(self.asr, cut, **cfg) if cut else []

        texts: list[list[str]] = [[] for _ in requests]
        tokens: list[list[TokenTime]] = [[] for _ in requests]
        counts = [0] * len(requests)
        for piece, result in zip(cut, decoded):
            text = str(result.get("text", "")).strip()
            counts[piece.request] += 1
            if not text:
                continue
            texts[piece.request].append(text)
            tokens[piece.request] += _tokens_from_result(
                result, piece.offset_samples // _SAMPLES_PER_MS, piece.samples.size // _SAMPLES_PER_MS)

        results: list[Transcript | Exception] = []
        for index in range(len(requests)):
            raw = " ".join(texts[index])
            try:
                text = self._punctuate(raw)
            except Exception as exc:  # noqa: BLE001 - fails only this request
                log.exception("punctuation failed")
                results.append(exc)
                continue
            results.append(Transcript(
                text=text, tokens=_monotonic(tokens[index]), mode=PARAFORMER,
                raw_text=strip_tags(raw), pieces=counts[index]))
        return results

    def _punctuate(self, raw: str) -> str:
        if not raw.strip():
            return ""
        out = self.punc.generate(input=raw)
        return strip_tags(str(out[0].get("text", ""))) if out else strip_tags(raw)

    def warm_up(self) -> None:
        self.punc.generate(input="你好 世界")


class _SenseVoiceMode:
    """SenseVoiceSmall with a language hint and ITN; its tags become typed fields."""

    name = SENSEVOICE

    def __init__(self, model: Any, timestamps: bool):
        self.model, self.timestamps = model, timestamps
        self.automodels = {"sensevoice": model}

    def transcribe(self, requests: Sequence[AsrRequest], pieces: _Pieces) -> list[Transcript | Exception]:
        language, use_itn = requests[0].language, requests[0].use_itn
        cut = pieces.of(requests)
        decoded = pieces.decode(self.model, cut, language=language, use_itn=use_itn,
                                output_timestamp=self.timestamps) if cut else []
        per_request: list[list[tuple[_Piece, dict]]] = [[] for _ in requests]
        for piece, result in zip(cut, decoded):
            per_request[piece.request].append((piece, result))

        results: list[Transcript | Exception] = []
        for index in range(len(requests)):
            parsed = [parse_sensevoice(str(result.get("text", ""))) for _, result in per_request[index]]
            tokens: list[TokenTime] = []
            for piece, result in per_request[index]:
                words = [strip_tags(str(w)) or str(w) for w in result.get("words") or []]
                tokens += _tokens_from_result(result, piece.offset_samples // _SAMPLES_PER_MS,
                                              piece.samples.size // _SAMPLES_PER_MS, words=words)
            first = next((p for p in parsed if p.language is not None), None)
            results.append(Transcript(
                text=_join_texts([p.text for p in parsed]),
                tokens=_monotonic(tokens),
                mode=SENSEVOICE,
                language=first.language if first else None,
                emotion=next((p.emotion for p in parsed if p.emotion is not None), None),
                event=next((p.event for p in parsed if p.event is not None), None),
                itn=next((p.itn for p in parsed if p.itn is not None), None),
                pieces=len(parsed)))
        return results

    def warm_up(self) -> None:
        pass


# --------------------------------------------------------------------------- engine


class AsrEngine:
    """Loaded models for the served modes; see the module docstring."""

    def __init__(self, modes: Sequence[_ParaformerMode | _SenseVoiceMode], options: AsrOptions,
                 dirs: ModelDirs, vad: Any = None):
        self._modes = {mode.name: mode for mode in modes}
        self.modes = tuple(self._modes)
        self.options = options
        self.dirs = dirs
        self._pieces = _Pieces(options, vad)
        used = [d for d in (dirs.paraformer, dirs.fsmn_vad, dirs.ct_punc, dirs.sensevoice) if d is not None]
        self.random_weights = any(is_random_weights(d) for d in used)
        self.random_weight_dirs = tuple(d for d in used if is_random_weights(d))

    @property
    def default_mode(self) -> str:
        return self.modes[0]

    @property
    def automodels(self) -> dict[str, Any]:
        """The loaded FunASR ``AutoModel`` of each model name (model_paths names)."""
        loaded = {name: model for mode in self._modes.values() for name, model in mode.automodels.items()}
        if self._pieces.vad is not None:
            loaded["fsmn_vad"] = self._pieces.vad
        return loaded

    def check_mode(self, mode: str | None) -> str:
        """The mode to use for a request asking for ``mode`` (None: the default)."""
        if mode is None:
            return self.default_mode
        if mode not in self.modes:
            raise WrongMode(
                f"this ASR worker serves {' and '.join(self.modes)} only, not {mode}; send mode "
                f"{self.default_mode.upper()} or use a worker started with ASR_MODE={mode} or ASR_MODE=both")
        return mode

    @staticmethod
    def model_names(mode: str) -> tuple[str, ...]:
        """Repository ids of the models that serve ``mode`` (for ModelInfo.models)."""
        return tuple(MODEL_SPECS[name].repo_id
                     for name in required_models(mode, emotion=False, vad_backend=None))

    # ----------------------------------------------------------------- public API

    def transcribe_batch(self, requests: Sequence[AsrRequest]) -> list[Transcript | Exception]:
        """Transcribe requests sharing one batch key; one result per request, in order."""
        if not requests:
            return []
        keys = {request.batch_key() for request in requests}
        if len(keys) != 1:
            raise ValueError(f"a batch must share one batch key, got {keys}")
        mode = self._modes[self.check_mode(requests[0].mode)]
        for request in requests:
            check_contract(request.samples)
            if request.samples.size == 0:
                raise InvalidInput("empty segment: no audio samples")
        started = time.perf_counter()
        try:
            results = mode.transcribe(requests, self._pieces)
        finally:
            trim_heap()  # activations freed by the call; glibc would keep them resident
        compute_ms = (time.perf_counter() - started) * 1000
        return [r if isinstance(r, Exception) else replace(r, compute_ms=compute_ms) for r in results]

    def transcribe(self, request: AsrRequest) -> Transcript:
        result = self.transcribe_batch([request])[0]
        if isinstance(result, Exception):
            raise result
        return result

    def warm_up(self) -> None:
        """One short decode per mode so the first real request pays no start-up costs."""
        noise = (np.random.default_rng(0).standard_normal(SAMPLE_RATE_HZ) * 0.03).astype(np.float32)
        for name, mode in self._modes.items():
            self.transcribe(AsrRequest(noise, mode=name))
            mode.warm_up()
        if self._pieces.vad is not None:
            self._pieces.split(np.tile(noise, 2), cap_samples=SAMPLE_RATE_HZ)


def load_engine(dirs: ModelDirs, modes: Sequence[str], options: AsrOptions) -> AsrEngine:
    """Load the models the served modes need, one at a time (peak memory is one model's)."""
    modes = tuple(modes)
    for mode in modes:
        if mode not in MODES:
            raise ValueError(f"unknown ASR mode {mode!r}")
    torch.set_num_threads(options.threads)
    lean = options.lean_loading
    served: list[_ParaformerMode | _SenseVoiceMode] = []
    vad = None
    for mode in modes:
        if mode == PARAFORMER:
            if dirs.paraformer is None or dirs.ct_punc is None or dirs.fsmn_vad is None:
                raise ValueError("paraformer mode needs the paraformer, ct_punc and fsmn_vad directories")
            # CT-punc first: its 471067-row embedding is the largest random init, and with
            # lean loading nothing else is resident yet when it is built.
            punc = load_automodel(dirs.ct_punc, options.threads, lean, quantize=options.quantize_int8)
            vad = load_automodel(dirs.fsmn_vad, options.threads, lean)
            guard_fsmn_scores(vad)
            asr = load_automodel(dirs.paraformer, options.threads, lean, quantize=options.quantize_int8)
            served.append(_ParaformerMode(asr, punc))
        else:
            if dirs.sensevoice is None:
                raise ValueError("sensevoice mode needs the sensevoice directory")
            served.append(_SenseVoiceMode(
                load_automodel(dirs.sensevoice, options.threads, lean, quantize=options.quantize_int8),
                options.sensevoice_timestamps))
    engine = AsrEngine(served, options, dirs, vad=vad)
    rss, peak = memory_mb()
    log.info("ASR engine ready for %s (rss %.0f MB, peak %.0f MB, int8 %s)",
             "+".join(modes), rss, peak, options.quantize_int8)
    return engine
