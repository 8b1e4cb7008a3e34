"""One Analyze session: client audio -> VAD stream -> per-segment ASR + emotion -> events.

Data flow (all asyncio, no model code in the gateway); each arrow is one task
of the session's ``TaskGroup``, each a method below::

    client chunks --_pump_client--> SampleBuffer + VAD call (call.write, <= 1 s per message)
    VAD events ----_pump_vad------> speech started/ended events; each ended segment is cut
                                    from the buffer once and analysed by _analyze_segment
                                    (ASR and emotion concurrently), at most
                                    max_segments_in_flight at a time
    analyses ------_emit_results--> results in segment order (each labelled with its speaker
                                    when the stream asked for speaker labels) --> client,
                                    then the summary

Every finished segment is cut from the buffer and analysed exactly once, so
total compute is linear in the audio length. The buffer only keeps audio that
a future segment can still need, as the VAD worker's progress events tell
(``keep_from_ms``), and the session stops reading client audio while it is
more than ``max_vad_lag_s`` ahead of the VAD; while ``max_segments_in_flight``
segments are being analysed it reads no VAD events. So a file streamed as
fast as the network allows costs bounded memory and never floods the
workers' queues; a segment a busy worker still refuses (another gateway
filled its queue) waits and is sent again until the call's deadline, so its
result is not lost. Cancelling the session (client gone) cancels every task
and worker call with it.

A CHANNEL_MODE_SEPARATE stream runs one Session per channel
(gateway/conversation.py): each channel's Session runs this same pipeline
(:meth:`Session.analyze`) on its own VAD stream, and they share the output
queue, the counter that numbers segments and the speaker clusterer, so segment
ids and speaker labels stay unique in the stream and every event names its channel.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from dataclasses import dataclass
from typing import AsyncIterator, Awaitable, Callable, Iterator

import grpc
import numpy as np

from speech_analysis.v1 import common_pb2, gateway_pb2
from speech_analysis.worker.v1 import asr_pb2, audio_pb2, emotion_pb2, speaker_pb2, vad_pb2
from services.common.audio import (SAMPLE_RATE_HZ, loudness_dbfs, ms_to_samples, peak_dbfs,
                                   samples_to_f32le, samples_to_ms)
from services.common.emotion_labels import emotion_source
from services.common.errors import OutOfRange, ServiceError, WrongMode, worker_error
from services.common.modes import mode_name
from services.common.metrics import AUDIO_RECEIVED_S, FINAL_RESULT_LATENCY_S, SEGMENT_PART_FAILURES, SEGMENTS
from gateway.buffer import SampleBuffer
from gateway.sentiment import TextSentimentScorer
from gateway.speakers import SpeakerClusterer, SpeakerOptions
from gateway.summary import SummaryBuilder, speaker_conversation
from gateway.workers import Workers

__all__ = ["SessionLimits", "Session", "SegmentAnalysis", "PartFailure", "EventStream", "session_log",
           "speaker_clusterer"]

log = logging.getLogger(__name__)

INTERIM_INTERVAL_S = 1.0
"""At least this much new speech between two interim results of a segment."""
INTERIM_GROWTH = 0.5
"""...and each interim covers at least (1 + this) x what the last one covered. Every
interim re-transcribes the open segment from its start; spacing them geometrically
(1, 2, 3, 4.5, 6.8, 10 s...) keeps their total to < 3x the final transcription's
audio, where one per second would grow with the square of the segment length."""
VAD_MESSAGE_SAMPLES = SAMPLE_RATE_HZ
"""Audio goes to the VAD worker in messages of at most 1 s (64 KB of float32), whatever
the size of the client's chunks, so no client message can exceed a worker's limit."""
BUSY_RETRY_FIRST_S = 0.05
BUSY_RETRY_MAX_S = 1.0
"""Back-off between attempts when a worker answers RESOURCE_EXHAUSTED (queue full)."""
_END = object()


class _SessionLog(logging.LoggerAdapter):
    """Prefixes every log line with the session id."""

    def process(self, msg, kwargs):
        return f"[session {self.extra['session']}] {msg}", kwargs


def session_log(label: str) -> logging.LoggerAdapter:
    """The gateway's logger, every line prefixed with ``[session <label>]``."""
    return _SessionLog(log, {"session": label})


@dataclass(frozen=True)
class SessionLimits:
    max_session_s: float
    worker_timeout_s: float
    default_mode: int  # common_pb2.AsrMode
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


@dataclass(frozen=True)
class PartFailure:
    """One part of a segment's analysis that failed; the other parts still have results."""

    part: str  # "asr" | "emotion" | "speaker"
    code: grpc.StatusCode
    message: str

    @classmethod
    def from_exception(cls, part: str, exc: BaseException) -> "PartFailure":
        if isinstance(exc, grpc.aio.AioRpcError):
            return cls(part, exc.code(), exc.details() or "")
        if isinstance(exc, ServiceError):
            return cls(part, exc.code, str(exc))
        return cls(part, grpc.StatusCode.INTERNAL, type(exc).__name__)

    def text(self) -> str:
        return f"{self.part}: {self.code.name}: {self.message}"


def _primary(group: BaseExceptionGroup) -> BaseException:
    """The exception a client should see for a failed session: a service error first."""
    leaves: list[BaseException] = []

    def collect(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                collect(inner)
        else:
            leaves.append(exc)

    collect(group)
    return next((e for e in leaves if isinstance(e, ServiceError)), leaves[0])


class EventStream:
    """The client's view of a session: runs :meth:`analyze` (which puts events on
    ``_out``), then the summary, while the caller iterates :meth:`events`."""

    id: str
    _out: asyncio.Queue
    _failure: BaseException | None = None

    async def analyze(self, client_audio: AsyncIterator[np.ndarray]) -> None:
        raise NotImplementedError

    async def _summary(self) -> gateway_pb2.SessionSummary:
        raise NotImplementedError

    async def _run(self, client_audio: AsyncIterator[np.ndarray]) -> None:
        """All of the session's work; ends with ``_END`` on the output queue unless cancelled."""
        try:
            await self.analyze(client_audio)
            await self._out.put(gateway_pb2.AnalyzeResponse(session_id=self.id, summary=await self._summary()))
        except asyncio.CancelledError:
            raise
        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - handed to the consumer, which maps it
            self._failure = failure_of(exc)
        await self._out.put(_END)

    async def events(self, client_audio: AsyncIterator[np.ndarray]) -> AsyncIterator[gateway_pb2.AnalyzeResponse]:
        """Drive the session; ``client_audio`` yields converted 16 kHz float32 chunks."""
        runner = asyncio.create_task(self._run(client_audio))
        try:
            while (item := await self._out.get()) is not _END:
                yield item
            if self._failure is not None:
                raise self._failure
        finally:
            if not runner.done():
                runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)


def failure_of(exc: BaseException) -> BaseException:
    """What a client should see for a session that failed with ``exc``."""
    if isinstance(exc, grpc.aio.AioRpcError):  # the VAD call failed before the pumps started
        return worker_error("vad", exc)
    if isinstance(exc, BaseExceptionGroup):
        return _primary(exc)
    return exc


@dataclass(frozen=True)
class SegmentAnalysis:
    """What the workers said about one segment."""

    result: gateway_pb2.SegmentResult
    failures: list[PartFailure]
    embedding: np.ndarray | None = None
    """The segment's speaker embedding (speaker labels only; None if that part failed)."""


def speaker_clusterer(config: gateway_pb2.StreamConfig) -> SpeakerClusterer | None:
    """The clusterer a stream's speaker labels need, or None when it did not ask for them."""
    if not config.speaker_labels.enabled:
        return None
    return SpeakerClusterer(SpeakerOptions.from_config(config.speaker_labels))


class Session(EventStream):
    """Runs one Analyze stream (or one channel of it); iterate :meth:`events` to drive it.

    ``channel``, ``out``, ``segment_ids`` and ``speakers`` are for the sessions of a
    CHANNEL_MODE_SEPARATE stream: the channel index its events carry, the output
    queue, the segment-id counter and the speaker clusterer they share.
    """

    def __init__(self, session_id: str, config: gateway_pb2.StreamConfig, workers: Workers,
                 limits: SessionLimits, deadline_s: float | None = None,
                 sentiment: TextSentimentScorer | None = None, *, channel: int = 0,
                 out: asyncio.Queue | None = None, segment_ids: Iterator[int] | None = None,
                 speakers: SpeakerClusterer | None = None):
        self.id = session_id
        self.channel = channel
        self.config = config
        self.workers = workers
        self.limits = limits
        self.deadline_s = deadline_s  # time.monotonic() of the client's deadline, if any
        self.sentiment = sentiment if config.text_sentiment else None
        self.mode = config.mode or limits.default_mode
        self.mode_name = mode_name(self.mode)
        self.buffer = SampleBuffer()
        self.summary = SummaryBuilder()
        self.log = session_log(session_id if out is None else f"{session_id} ch{channel}")
        self._out: asyncio.Queue = asyncio.Queue(maxsize=64) if out is None else out  # events, then _END
        self._segment_ids = itertools.count() if segment_ids is None else segment_ids
        self.speakers = speaker_clusterer(config) if speakers is None and out is None else speakers
        self._ids: dict[int, int] = {}  # the VAD stream's segment id -> the session's
        # (analysis task, time.monotonic() of its speech_ended), in segment order; None ends
        self._analyses: asyncio.Queue[tuple[asyncio.Task, float] | None] = asyncio.Queue()
        self._in_flight = asyncio.Semaphore(limits.max_segments_in_flight)
        self._open_start: int | None = None  # sample index of the open segment's start
        self._open_id = 0
        self._interim_task: asyncio.Task | None = None
        self._last_interim_end = 0  # sample index covered by the last interim request
        self._vad_processed = 0  # samples the VAD worker has reported processed
        self._vad_progress = asyncio.Event()  # set whenever _vad_processed moves

    def finished_line(self) -> str:
        """What the log says when the session ends."""
        return (f"{self.buffer.end / SAMPLE_RATE_HZ:.1f} s of audio, {self.summary.segments} "
                f"segments, buffer peak {self.buffer.peak / SAMPLE_RATE_HZ:.1f} s")

    def _event(self, **kwargs) -> gateway_pb2.AnalyzeResponse:
        return gateway_pb2.AnalyzeResponse(session_id=self.id, **kwargs)

    def _segment_id(self, vad_segment_id: int) -> int:
        """The session's id for a VAD segment: numbered from the shared counter when it starts."""
        if vad_segment_id not in self._ids:
            self._ids[vad_segment_id] = next(self._segment_ids)
        return self._ids[vad_segment_id]

    # ---- the stream ---------------------------------------------------------------
    async def analyze(self, client_audio: AsyncIterator[np.ndarray]) -> None:
        """The pipeline: every event but the summary goes to the output queue."""
        call = self.workers.vad.StreamVad()
        try:
            await self._open_vad(call)
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._pump_client(client_audio, call))
                tasks.create_task(self._pump_vad(call, tasks))
                tasks.create_task(self._emit_results())
        finally:
            call.cancel()  # no-op once the call has ended

    async def _open_vad(self, call) -> None:
        """Send the config and wait until the worker accepts the stream (initial metadata).

        Audio written while the worker is refusing the stream would race its status: the
        failed write ends the call locally with "Internal error from Core" and the worker's
        real answer (RESOURCE_EXHAUSTED, INVALID_ARGUMENT, UNAVAILABLE) would be lost.
        """
        try:
            await call.write(vad_pb2.StreamVadRequest(config=self._vad_config()))
            await call.initial_metadata()
        except asyncio.InvalidStateError:
            pass  # the call has already ended: reading it (_pump_vad) reports its status

    def _vad_config(self) -> common_pb2.VadConfig:
        vad = common_pb2.VadConfig()
        vad.CopyFrom(self.config.vad)
        vad.backend = self.config.vad_backend
        return vad

    async def _pump_client(self, client_audio: AsyncIterator[np.ndarray], call) -> None:
        max_samples = int(self.limits.max_session_s * SAMPLE_RATE_HZ)
        max_lag = int(self.limits.max_vad_lag_s * SAMPLE_RATE_HZ)
        try:
            async for samples in client_audio:
                if self.buffer.end + samples.size > max_samples:
                    raise OutOfRange(
                        f"the stream is longer than the limit of {self.limits.max_session_s:.0f} s of audio "
                        "per session (MAX_SESSION_S); split the recording into several sessions")
                # Back-pressure: a client far faster than real time (a file upload) waits for
                # the VAD here, and gRPC flow control holds it, so the buffer stays bounded.
                while self.buffer.end - self._vad_processed > max_lag:
                    self._vad_progress.clear()
                    await self._vad_progress.wait()
                self.buffer.append(samples)
                AUDIO_RECEIVED_S.labels(self.mode_name).inc(samples.size / SAMPLE_RATE_HZ)
                for start in range(0, samples.size, VAD_MESSAGE_SAMPLES):
                    piece = samples[start:start + VAD_MESSAGE_SAMPLES]
                    await call.write(vad_pb2.StreamVadRequest(
                        audio=audio_pb2.AudioChunk(samples_f32le=samples_to_f32le(piece))))
                self._maybe_interim()
            await call.done_writing()
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
            # The VAD call ended while we wrote (the worker refused or failed the stream). A
            # write racing the worker's status fails with a local "Internal error from Core";
            # the worker's own status arrives on the read side, which _pump_vad reports.
            return

    async def _pump_vad(self, call, tasks: asyncio.TaskGroup) -> None:
        try:
            async for vad_event in call:
                kind = vad_event.WhichOneof("event")
                if kind == "progress":
                    self._on_progress(vad_event.progress)
                elif kind == "speech_started":
                    started = vad_event.speech_started
                    self._open_start = ms_to_samples(started.start_ms)
                    self._open_id = self._segment_id(started.segment_id)
                    self._last_interim_end = self._open_start
                    await self._out.put(self._event(speech_started=gateway_pb2.SpeechStarted(
                        segment_id=self._open_id, start_ms=started.start_ms, channel=self.channel)))
                elif kind == "speech_ended":
                    await self._on_speech_ended(vad_event.speech_ended, tasks)
        except grpc.aio.AioRpcError as exc:
            raise worker_error("vad", exc) from None
        finally:
            if self._interim_task is not None:
                self._interim_task.cancel()
            await self._analyses.put(None)

    def _on_progress(self, progress: vad_pb2.Progress) -> None:
        # Audio before keep_from can never be part of a segment any more.
        keep_from = ms_to_samples(progress.keep_from_ms)
        if self._open_start is not None:
            keep_from = min(keep_from, self._open_start)
        self.buffer.trim(keep_from)
        self._vad_processed = ms_to_samples(progress.processed_ms)
        self._vad_progress.set()

    async def _on_speech_ended(self, ended: vad_pb2.SpeechEnd, tasks: asyncio.TaskGroup) -> None:
        segment_id = self._segment_id(ended.segment_id)
        del self._ids[ended.segment_id]
        await self._out.put(self._event(speech_ended=gateway_pb2.SpeechEnded(
            segment_id=segment_id, start_ms=ended.start_ms, end_ms=ended.end_ms, channel=self.channel)))
        start, end = ms_to_samples(ended.start_ms), ms_to_samples(ended.end_ms)
        samples = self.buffer.slice(start, end)
        # Millisecond rounding may put the end up to one millisecond past the audio received.
        if samples.size < end - start - ms_to_samples(1):
            self.log.error("segment %d: only %d of %d samples still buffered",
                           segment_id, samples.size, end - start)
        self._open_start = None
        self.buffer.trim(end)
        # Back-pressure: while this session has max_segments_in_flight being analysed,
        # stop reading VAD events (the VAD stream, and through its progress events the
        # client, wait too).
        await self._in_flight.acquire()
        analysis = tasks.create_task(self._analyze_segment(segment_id, ended.start_ms, ended.end_ms, samples))
        analysis.add_done_callback(lambda _: self._in_flight.release())
        await self._analyses.put((analysis, time.monotonic()))

    async def _emit_results(self) -> None:
        while (item := await self._analyses.get()) is not None:
            task, speech_ended_at = item
            analysis = await task
            result, failures = analysis.result, analysis.failures
            if analysis.embedding is not None:
                # Here, in segment order, not as analyses finish: labels must not depend on timing.
                try:
                    result.speaker = self.speakers.assign(analysis.embedding, result.end_ms - result.start_ms)
                except ValueError as exc:  # e.g. replicas serving models of different sizes
                    failures.append(PartFailure("speaker", grpc.StatusCode.INTERNAL, str(exc)))
                    result.errors.append(failures[-1].text())
            self.summary.add(result)
            await self._out.put(self._event(segment_result=result))
            FINAL_RESULT_LATENCY_S.labels(self.mode_name).observe(time.monotonic() - speech_ended_at)
            SEGMENTS.labels(self.mode_name).inc()
            for failure in failures:
                SEGMENT_PART_FAILURES.labels(failure.part, failure.code.name).inc()
                await self._out.put(self._event(error=gateway_pb2.ErrorEvent(
                    code=failure.code.name, message=failure.text(), segment_id=result.segment_id,
                    channel=self.channel)))

    async def _summary(self) -> gateway_pb2.SessionSummary:
        summary = self.summary.to_proto(samples_to_ms(self.buffer.end))
        if self.speakers is not None:
            speaker_conversation(self.summary, summary)
        if self.sentiment is not None:
            for part in (summary, *summary.speakers):
                if part.transcript and (sentiment := await self.sentiment.score(part.transcript)) is not None:
                    part.sentiment.CopyFrom(sentiment)
        return summary

    # ---- worker calls -------------------------------------------------------------
    def _call_deadline(self) -> float:
        deadline = time.monotonic() + self.limits.worker_timeout_s
        return deadline if self.deadline_s is None else min(deadline, self.deadline_s)

    async def _call_when_free(self, rpc: Callable[..., Awaitable], request) -> object:
        """``rpc(request)``, sent again while the worker answers RESOURCE_EXHAUSTED.

        A full worker queue means "not now", so the segment waits (jittered exponential
        back-off) until the call's deadline instead of losing its result. gRPC's own retry
        policy is not used for this: it stops after at most 5 attempts whatever the deadline.
        """
        deadline = self._call_deadline()
        delay = BUSY_RETRY_FIRST_S
        while True:
            try:
                return await rpc(request, timeout=max(deadline - time.monotonic(), 0.001))
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED or time.monotonic() + delay >= deadline:
                    raise
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, BUSY_RETRY_MAX_S)

    def _transcribe_request(self, audio: audio_pb2.AudioChunk, start_ms: int) -> asr_pb2.TranscribeRequest:
        return asr_pb2.TranscribeRequest(
            audio=audio, mode=self.mode, segment_start_ms=start_ms, hotwords=list(self.config.hotwords),
            language=self.config.language or "auto", use_itn=self.config.use_itn)

    def _wants_speechbrain(self) -> bool:
        return self.mode != common_pb2.ASR_MODE_SENSEVOICE or self.config.speechbrain_emotion

    async def _analyze_segment(self, segment_id: int, start_ms: int, end_ms: int,
                               samples: np.ndarray) -> SegmentAnalysis:
        result = gateway_pb2.SegmentResult(
            segment_id=segment_id, start_ms=start_ms, end_ms=end_ms, channel=self.channel,
            features=gateway_pb2.AudioFeatures(duration_ms=end_ms - start_ms,
                                               loudness_dbfs=loudness_dbfs(samples),
                                               peak_dbfs=peak_dbfs(samples)))
        audio = audio_pb2.AudioChunk(samples_f32le=samples_to_f32le(samples))  # serialised once
        calls = {"asr": self._call_when_free(self.workers.asr.Transcribe, self._transcribe_request(audio, start_ms))}
        if self._wants_speechbrain():
            calls["emotion"] = self._call_when_free(self.workers.emotion.Classify,
                                                    emotion_pb2.ClassifyRequest(audio=audio))
        if self.speakers is not None and self.workers.speaker is not None:
            calls["speaker"] = self._call_when_free(self.workers.speaker.Embed, speaker_pb2.EmbedRequest(audio=audio))
        outcomes = dict(zip(calls, await asyncio.gather(*calls.values(), return_exceptions=True)))
        failures = [PartFailure.from_exception(part, outcome) for part, outcome in outcomes.items()
                    if isinstance(outcome, BaseException) and self._not_fatal(outcome)]
        emotion = outcomes.get("emotion")
        if isinstance(emotion, emotion_pb2.ClassifyResponse):
            result.emotions.append(gateway_pb2.EmotionResult(
                source=emotion_source(emotion.model_info.models), label=emotion.label,
                display_name=emotion.display_name,
                confidence=emotion.confidence, probabilities=emotion.probabilities))
            result.random_weights |= emotion.model_info.random_weights
        asr = outcomes["asr"]
        if isinstance(asr, asr_pb2.TranscribeResponse):
            self._add_transcript(result, asr)
        embedding = None
        speaker = outcomes.get("speaker")
        if isinstance(speaker, speaker_pb2.EmbedResponse):
            embedding = np.asarray(speaker.embedding, dtype=np.float32)
            result.random_weights |= speaker.model_info.random_weights
            if not (embedding.size and np.isfinite(embedding).all() and np.any(embedding)):
                failures.append(PartFailure("speaker", grpc.StatusCode.INTERNAL,
                                            "the speaker worker returned an unusable embedding"))
                embedding = None
        if self.sentiment is not None and result.text:
            sentiment = await self.sentiment.score(result.text)
            if sentiment is not None:
                result.sentiment.CopyFrom(sentiment)
        result.errors.extend(failure.text() for failure in failures)
        if failures:
            self.log.warning("segment %d partly failed: %s", segment_id, "; ".join(result.errors))
        return SegmentAnalysis(result, failures, embedding)

    @staticmethod
    def _add_transcript(result: gateway_pb2.SegmentResult, asr: asr_pb2.TranscribeResponse) -> None:
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

    @staticmethod
    def _not_fatal(exc: BaseException) -> bool:
        """Errors that concern the whole stream, not one segment, end it (raised here)."""
        if isinstance(exc, asyncio.CancelledError):
            raise exc
        if isinstance(exc, grpc.aio.AioRpcError) and exc.code() == grpc.StatusCode.FAILED_PRECONDITION:
            raise WrongMode(exc.details())
        return True

    # ---- interim results ----------------------------------------------------------
    def _maybe_interim(self) -> None:
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
        self._interim_task = asyncio.create_task(self._interim(self._open_id, samples, self.buffer.end))

    async def _interim(self, segment_id: int, samples: np.ndarray, end: int) -> None:
        """Best effort: any failure (busy model, worker down) just drops this partial."""
        request = self._transcribe_request(audio_pb2.AudioChunk(samples_f32le=samples_to_f32le(samples)),
                                           samples_to_ms(end - samples.size))
        try:
            response = await self.workers.asr.Transcribe(
                request, timeout=max(self._call_deadline() - time.monotonic(), 0.001))
        except grpc.aio.AioRpcError as exc:
            self.log.debug("interim result dropped: %s", exc.code().name)
            return
        if self._open_start is not None and self._open_id == segment_id:
            await self._out.put(self._event(interim_result=gateway_pb2.InterimResult(
                segment_id=segment_id, text=response.text, end_ms=samples_to_ms(end), channel=self.channel)))
