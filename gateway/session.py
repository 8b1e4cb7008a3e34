"""One Analyze session: client audio -> VAD stream -> per-segment ASR + emotion -> events.

Data flow (all asyncio, no model code in the gateway)::

    client chunks --convert--> SampleBuffer --> VAD worker stream
                                                  | speech started / ended
                                                  v
                       segment audio (cut once) --> ASR  \\ concurrently
                                                --> emotion /
                                                  v
                       results re-ordered by segment id --> client

Every finished segment is cut from the buffer and analysed exactly once, so
total compute is linear in the audio length. The buffer only keeps audio that
a future segment can still need, as the VAD worker's progress events tell
(``keep_from_ms``), and the session stops reading client audio while it is
more than ``max_vad_lag_s`` ahead of the VAD; and it analyses at most
``max_segments_in_flight`` segments at once, reading no VAD events meanwhile.
So a file streamed as fast as the network allows costs bounded memory, never
floods the workers' queues, and loses nothing. Cancelling the
session (client gone) cancels the in-flight worker calls with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import AsyncIterator

import grpc
import numpy as np

from protos.v1 import asr_pb2, audio_pb2, emotion_pb2, gateway_pb2, vad_pb2
from services.common.audio import (SAMPLE_RATE_HZ, loudness_dbfs, ms_to_samples, peak_dbfs,
                                   samples_to_f32le, samples_to_ms)
from services.common.errors import Overloaded, WrongMode, worker_error
from gateway.sentiment import score_text
from gateway.workers import Workers

__all__ = ["SessionLimits", "SampleBuffer", "Session"]

log = logging.getLogger(__name__)

LEGACY_VAD_MARGIN_SAMPLES = 60 * SAMPLE_RATE_HZ
"""For a VAD worker that sends no Progress events (one from before them, e.g. during a
rolling upgrade): audio kept while no segment is open, and no back-pressure on the client."""
LEGACY_VAD_WAIT_S = 5.0
"""A session that has waited this long for its first Progress event treats its VAD
worker as one from before them."""

INTERIM_INTERVAL_S = 1.0
"""At least this much new speech between two interim results of a segment."""
INTERIM_GROWTH = 0.5
"""...and each interim covers at least (1 + this) x what the last one covered. Every
interim re-transcribes the open segment from its start; spacing them geometrically
(1, 2, 3, 4.5, 6.8, 10 s...) keeps their total to < 3x the final transcription's
audio, where one per second would grow with the square of the segment length."""


class _SessionLog(logging.LoggerAdapter):
    """Prefixes every log line with the session id."""

    def process(self, msg, kwargs):
        return f"[session {self.extra['session']}] {msg}", kwargs

EMOTION_DISPLAY = {"neu": "中性", "ang": "生气", "hap": "开心", "sad": "悲伤"}
# SenseVoice's emotion tags mapped onto the SpeechBrain classes for the session summary.
_SENSEVOICE_TO_CLASS = {"NEUTRAL": "neu", "ANGRY": "ang", "HAPPY": "hap", "SAD": "sad"}
_DONE = object()


@dataclass(frozen=True)
class SessionLimits:
    max_session_s: float
    worker_timeout_s: float
    default_mode: int  # asr_pb2.AsrMode
    max_vad_lag_s: float = 30.0
    """The session stops reading client audio while it is this far ahead of the VAD."""
    max_segments_in_flight: int = 4
    """Segments of one session analysed at once; the next waits (and with it the VAD
    stream, and through it the client), so a fast client cannot flood the workers' queues."""

    def __post_init__(self) -> None:
        # The VAD reports progress every 250 ms of audio and may hold back up to one 200 ms
        # block: a smaller lag could wait for a report that never comes.
        if self.max_vad_lag_s < 1:
            raise ValueError(f"max_vad_lag_s must be at least 1 s, got {self.max_vad_lag_s}")
        if self.max_segments_in_flight < 1:
            raise ValueError(f"max_segments_in_flight must be at least 1, got {self.max_segments_in_flight}")


class SampleBuffer:
    """Append-only 16 kHz audio with a moving start: memory holds only what may still be cut."""

    def __init__(self) -> None:
        self._chunks: list[np.ndarray] = []
        self.base = 0   # stream sample index of the first kept sample
        self.end = 0    # stream sample index after the last sample
        self.peak = 0   # most samples ever held at once

    def append(self, samples: np.ndarray) -> None:
        if samples.size:
            self._chunks.append(samples)
            self.end += samples.size
            self.peak = max(self.peak, self.end - self.base)

    def slice(self, start: int, stop: int) -> np.ndarray:
        start, stop = max(start, self.base), min(stop, self.end)
        if stop <= start:
            return np.zeros(0, dtype=np.float32)
        joined = np.concatenate(self._chunks) if len(self._chunks) > 1 else self._chunks[0]
        self._chunks = [joined]
        return joined[start - self.base: stop - self.base].copy()

    def trim(self, before: int) -> None:
        """Drop samples before stream index ``before``."""
        before = min(before, self.end)
        if before <= self.base:
            return
        joined = np.concatenate(self._chunks) if len(self._chunks) > 1 else (
            self._chunks[0] if self._chunks else np.zeros(0, dtype=np.float32))
        self._chunks = [joined[before - self.base:]]
        self.base = before


@dataclass
class _Summary:
    transcript: list[str] = field(default_factory=list)
    speech_ms: int = 0
    weighted: dict[str, float] = field(default_factory=dict)
    time_ms: dict[str, int] = field(default_factory=dict)
    random_weights: bool = False
    segments: int = 0

    def add(self, result: gateway_pb2.SegmentResult) -> None:
        self.segments += 1
        duration = result.end_ms - result.start_ms
        self.speech_ms += duration
        if result.text:
            self.transcript.append(result.text)
        self.random_weights |= result.random_weights
        if not result.emotions:
            return
        emotion = result.emotions[0]  # speechbrain first when it ran (it has probabilities)
        label = _SENSEVOICE_TO_CLASS.get(emotion.label, emotion.label)
        self.time_ms[label] = self.time_ms.get(label, 0) + duration
        for score in emotion.probabilities:
            key = _SENSEVOICE_TO_CLASS.get(score.label, score.label)
            self.weighted[key] = self.weighted.get(key, 0.0) + score.probability * duration

    def to_proto(self, audio_ms: int) -> gateway_pb2.SessionSummary:
        total = sum(self.weighted.values())
        distribution = [
            gateway_pb2.EmotionShare(label=label, display_name=EMOTION_DISPLAY.get(label, label),
                                     share=weight / total if total else 0.0,
                                     duration_ms=self.time_ms.get(label, 0))
            for label, weight in sorted(self.weighted.items(), key=lambda kv: -kv[1])]
        dominant = distribution[0].label if distribution else ""
        return gateway_pb2.SessionSummary(
            transcript="".join(self.transcript) if _is_cjk("".join(self.transcript)) else " ".join(self.transcript),
            segment_count=self.segments,
            audio_duration_ms=audio_ms,
            speech_duration_ms=self.speech_ms,
            silence_duration_ms=max(audio_ms - self.speech_ms, 0),
            dominant_emotion=dominant,
            dominant_emotion_display_name=EMOTION_DISPLAY.get(dominant, dominant),
            emotion_distribution=distribution,
            random_weights=self.random_weights)


def _is_cjk(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


def _rpc_error_text(part: str, exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{part}: {exc.code().name}: {exc.details()}"
    return f"{part}: {type(exc).__name__}: {exc}"


class Session:
    """Runs one Analyze stream; iterate :meth:`events` to drive it."""

    def __init__(self, session_id: str, config: gateway_pb2.StreamConfig, workers: Workers,
                 limits: SessionLimits, deadline_s: float | None = None):
        self.id = session_id
        self.config = config
        self.workers = workers
        self.limits = limits
        self.deadline_s = deadline_s  # time.monotonic() of the client's deadline, if any
        self.mode = config.mode or limits.default_mode
        self.buffer = SampleBuffer()
        self.summary = _Summary()
        self.log = _SessionLog(log, {"session": session_id})
        self._open_start: int | None = None  # sample index of the open segment's start
        self._open_id = 0
        self._interim_task: asyncio.Task | None = None
        self._last_interim_end = 0  # sample index covered by the last interim request
        self._vad_processed = 0  # samples the VAD worker has reported processed
        self._vad_progress = asyncio.Event()  # set whenever _vad_processed moves
        self._vad_sends_progress: bool | None = None  # unknown until the first Progress event
        self._in_flight = asyncio.Semaphore(limits.max_segments_in_flight)

    def finished_line(self) -> str:
        """What the log says when the session ends."""
        return (f"finished: {self.buffer.end / SAMPLE_RATE_HZ:.1f} s of audio, {self.summary.segments} "
                f"segments, buffer peak {self.buffer.peak / SAMPLE_RATE_HZ:.1f} s")

    # ---- worker calls -------------------------------------------------------------
    def _timeout(self) -> float:
        timeout = self.limits.worker_timeout_s
        if self.deadline_s is not None:
            timeout = min(timeout, max(self.deadline_s - time.monotonic(), 0.001))
        return timeout

    async def _transcribe(self, samples: np.ndarray, start_ms: int) -> asr_pb2.TranscribeResponse:
        request = asr_pb2.TranscribeRequest(
            audio=audio_pb2.AudioChunk(samples_f32le=samples_to_f32le(samples)),
            mode=self.mode, segment_start_ms=start_ms, hotwords=list(self.config.hotwords),
            language=self.config.language or "auto", use_itn=self.config.use_itn)
        return await self.workers.asr.Transcribe(request, timeout=self._timeout(), wait_for_ready=False)

    async def _classify(self, samples: np.ndarray) -> emotion_pb2.ClassifyResponse:
        request = emotion_pb2.ClassifyRequest(
            audio=audio_pb2.AudioChunk(samples_f32le=samples_to_f32le(samples)))
        return await self.workers.emotion.Classify(request, timeout=self._timeout())

    def _wants_speechbrain(self) -> bool:
        return self.mode != asr_pb2.SENSEVOICE or self.config.speechbrain_emotion

    async def analyze_segment(self, segment_id: int, start_ms: int, end_ms: int,
                              samples: np.ndarray) -> gateway_pb2.SegmentResult:
        result = gateway_pb2.SegmentResult(
            segment_id=segment_id, start_ms=start_ms, end_ms=end_ms,
            features=gateway_pb2.AudioFeatures(duration_ms=end_ms - start_ms,
                                               loudness_dbfs=loudness_dbfs(samples),
                                               peak_dbfs=peak_dbfs(samples)))
        calls = [self._transcribe(samples, start_ms)]
        if self._wants_speechbrain():
            calls.append(self._classify(samples))
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        asr = outcomes[0]
        emotion = outcomes[1] if len(outcomes) > 1 else None
        if isinstance(emotion, emotion_pb2.ClassifyResponse):
            result.emotions.append(gateway_pb2.EmotionResult(
                source="speechbrain", label=emotion.label, display_name=emotion.display_name,
                confidence=emotion.confidence, probabilities=emotion.probabilities))
            result.random_weights |= emotion.model_info.random_weights
        elif isinstance(emotion, BaseException):
            self._check_fatal(emotion)
            result.errors.append(_rpc_error_text("emotion", emotion))
        if isinstance(asr, asr_pb2.TranscribeResponse):
            result.text = asr.text
            result.timestamps.extend(asr.timestamps)
            result.language, result.language_display_name = asr.language, asr.language_display_name
            result.audio_event = asr.audio_event
            result.audio_event_display_name = asr.audio_event_display_name
            result.random_weights |= asr.model_info.random_weights
            if asr.HasField("emotion") and asr.emotion.label:
                result.emotions.append(gateway_pb2.EmotionResult(
                    source="sensevoice", label=asr.emotion.label, display_name=asr.emotion.display_name,
                    confidence=asr.emotion.probability, probabilities=[asr.emotion]))
        else:
            self._check_fatal(asr)
            result.errors.append(_rpc_error_text("asr", asr))
        if self.config.text_sentiment and result.text:
            sentiment = await score_text(result.text)
            if sentiment is not None:
                result.sentiment.CopyFrom(sentiment)
        if result.errors:
            self.log.warning("segment %d partly failed: %s", segment_id, "; ".join(result.errors))
        return result

    async def _interim(self, segment_id: int, samples: np.ndarray, end: int,
                       out: asyncio.Queue) -> None:
        """Best effort: any failure (busy model, worker down) just drops this partial."""
        try:
            response = await self._transcribe(samples, samples_to_ms(end - samples.size))
        except (grpc.aio.AioRpcError, asyncio.TimeoutError) as exc:
            self.log.debug("interim result dropped: %s", exc)
            return
        if self._open_start is not None and self._open_id == segment_id:
            await out.put(gateway_pb2.AnalyzeEvent(session_id=self.id, interim_result=gateway_pb2.InterimResult(
                segment_id=segment_id, text=response.text, end_ms=samples_to_ms(end))))

    def _maybe_interim(self, out: asyncio.Queue) -> None:
        """Start an interim transcription of the open segment if one is due and none is running."""
        if not self.config.interim_results or self._open_start is None:
            return
        if self._interim_task is not None and not self._interim_task.done():
            return  # the model is still busy with the last one: drop, don't queue
        covered = max(self._last_interim_end - self._open_start, 0)
        wanted = covered + max(INTERIM_INTERVAL_S * SAMPLE_RATE_HZ, INTERIM_GROWTH * covered)
        if self.buffer.end - self._open_start < wanted:
            return
        self._last_interim_end = self.buffer.end
        samples = self.buffer.slice(self._open_start, self.buffer.end)
        self._interim_task = asyncio.create_task(
            self._interim(self._open_id, samples, self.buffer.end, out))

    def _check_fatal(self, exc: BaseException) -> None:
        """Errors that concern the whole stream, not one segment, end it."""
        if isinstance(exc, asyncio.CancelledError):
            raise exc
        if isinstance(exc, grpc.aio.AioRpcError) and exc.code() == grpc.StatusCode.FAILED_PRECONDITION:
            raise WrongMode(exc.details())

    # ---- the stream ---------------------------------------------------------------
    def _vad_config(self) -> vad_pb2.VadConfig:
        vad = vad_pb2.VadConfig()
        vad.CopyFrom(self.config.vad)
        vad.backend = self.config.vad_backend
        return vad

    async def events(self, client_audio: AsyncIterator[np.ndarray]) -> AsyncIterator[gateway_pb2.AnalyzeEvent]:
        """Drive the session; ``client_audio`` yields converted 16 kHz float32 chunks."""
        out: asyncio.Queue = asyncio.Queue()
        to_vad: asyncio.Queue = asyncio.Queue(maxsize=32)  # back-pressure on the client
        segment_tasks: asyncio.Queue = asyncio.Queue()
        max_samples = int(self.limits.max_session_s * SAMPLE_RATE_HZ)

        def event(**kwargs) -> gateway_pb2.AnalyzeEvent:
            return gateway_pb2.AnalyzeEvent(session_id=self.id, **kwargs)

        async def vad_requests():
            yield vad_pb2.VadRequest(config=self._vad_config())
            while (samples := await to_vad.get()) is not None:
                yield vad_pb2.VadRequest(audio=audio_pb2.AudioChunk(samples_f32le=samples_to_f32le(samples)))

        max_lag = int(self.limits.max_vad_lag_s * SAMPLE_RATE_HZ)

        async def pump_client() -> None:
            async for samples in client_audio:
                if self.buffer.end + samples.size > max_samples:
                    raise Overloaded(
                        f"session longer than the limit of {self.limits.max_session_s:.0f} s of audio; "
                        "split the recording into several sessions")
                # Back-pressure: a client far faster than real time (a file upload) waits for
                # the VAD here, and gRPC flow control holds it, so the buffer stays bounded.
                while self._vad_sends_progress is not False and self.buffer.end - self._vad_processed > max_lag:
                    self._vad_progress.clear()
                    if self._vad_sends_progress:
                        await self._vad_progress.wait()
                        continue
                    try:
                        await asyncio.wait_for(self._vad_progress.wait(), LEGACY_VAD_WAIT_S)
                    except asyncio.TimeoutError:
                        self._vad_sends_progress = False
                        self.log.warning("VAD worker sends no progress events (an older version?): "
                                         "keeping a fixed %d s margin, no back-pressure",
                                         LEGACY_VAD_MARGIN_SAMPLES // SAMPLE_RATE_HZ)
                if not self._vad_sends_progress and self._open_start is None:
                    self.buffer.trim(self.buffer.end - LEGACY_VAD_MARGIN_SAMPLES)
                self.buffer.append(samples)
                await to_vad.put(samples)
                self._maybe_interim(out)
            await to_vad.put(None)

        async def pump_vad() -> None:
            call = self.workers.vad.StreamVad(vad_requests())
            try:
                async for vad_event in call:
                    kind = vad_event.WhichOneof("event")
                    if kind == "progress":
                        # Audio before keep_from can never be part of a segment any more.
                        keep_from = ms_to_samples(vad_event.progress.keep_from_ms)
                        if self._open_start is not None:
                            keep_from = min(keep_from, self._open_start)
                        self.buffer.trim(keep_from)
                        self._vad_processed = ms_to_samples(vad_event.progress.processed_ms)
                        self._vad_sends_progress = True
                        self._vad_progress.set()
                    elif kind == "speech_started":
                        started = vad_event.speech_started
                        self._open_start = ms_to_samples(started.start_ms)
                        self._open_id = started.segment_id
                        self._last_interim_end = self._open_start
                        await out.put(event(speech_started=gateway_pb2.SpeechStarted(
                            segment_id=started.segment_id, start_ms=started.start_ms)))
                    elif kind == "speech_ended":
                        ended = vad_event.speech_ended
                        await out.put(event(speech_ended=gateway_pb2.SpeechEnded(
                            segment_id=ended.segment_id, start_ms=ended.start_ms, end_ms=ended.end_ms)))
                        start, end = ms_to_samples(ended.start_ms), ms_to_samples(ended.end_ms)
                        samples = self.buffer.slice(start, end)
                        if samples.size < end - start:
                            self.log.error("segment %d: only %d of %d samples still buffered",
                                           ended.segment_id, samples.size, end - start)
                        self._open_start = None
                        self.buffer.trim(end)
                        # Back-pressure: while this session has max_segments_in_flight being
                        # analysed, stop reading VAD events (the VAD stream, and through its
                        # progress events the client, wait too).
                        await self._in_flight.acquire()
                        task = asyncio.create_task(self.analyze_segment(
                            ended.segment_id, ended.start_ms, ended.end_ms, samples))
                        task.add_done_callback(lambda _: self._in_flight.release())
                        await segment_tasks.put(task)
            except grpc.aio.AioRpcError as exc:
                raise worker_error("vad", exc) from None
            finally:
                await segment_tasks.put(None)

        async def emit_results() -> None:
            while (task := await segment_tasks.get()) is not None:
                result = await task
                self.summary.add(result)
                await out.put(event(segment_result=result))
                for error in result.errors:
                    part, _, rest = error.partition(": ")
                    code = rest.split(":", 1)[0] if rest else "UNKNOWN"
                    await out.put(event(error=gateway_pb2.ErrorEvent(
                        code=code, message=error, segment_id=result.segment_id)))

        async def supervise(coro) -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
                await out.put(exc)

        tasks = [asyncio.create_task(supervise(c)) for c in (pump_client(), pump_vad(), emit_results())]
        results_task = tasks[2]
        try:
            while True:
                getter = asyncio.ensure_future(out.get())
                done, _ = await asyncio.wait({getter, results_task}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    await tasks[1]  # pump_vad has finished; let its supervisor report any error
                    while not out.empty():
                        item = out.get_nowait()
                        if isinstance(item, BaseException):
                            raise item
                        yield item
                    break
                item = getter.result()
                if isinstance(item, BaseException):
                    raise item
                yield item
            summary = self.summary.to_proto(samples_to_ms(self.buffer.end))
            if self.config.text_sentiment and summary.transcript:
                summary.sentiment.CopyFrom(await score_text(summary.transcript))
            yield event(summary=summary)
        finally:
            for task in tasks + ([self._interim_task] if self._interim_task else []):
                task.cancel()
            while not segment_tasks.empty():
                pending = segment_tasks.get_nowait()
                if pending is not None:
                    pending.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.gather(*tasks, return_exceptions=True)
