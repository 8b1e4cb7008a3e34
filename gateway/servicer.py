"""gRPC SpeechAnalysisService: validates requests and hands audio to a Session.

Every stream takes one of ``max_sessions`` slots from its first moment (before
its config arrives) until it ends, and a stream that sends nothing for
``idle_timeout_s`` is ended with ``OUT_OF_RANGE``, so clients that connect and
go quiet cannot hold the gateway's capacity. A CHANNEL_MODE_SEPARATE stream runs
one VAD stream per channel and takes one slot per channel once its channel count
is known.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass
from typing import AsyncIterator

import grpc
import numpy as np

from speech_analysis.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc
from services.common.errors import InvalidInput, NotEnabled, OutOfRange, Overloaded, status_for
from services.common.grpc_server import deadline_of
from gateway.audio_input import (AudioConverter, FileDecoder, check_separate_channels, separate_channels,
                                 validate_config)
from gateway.conversation import Conversation
from gateway.sentiment import TextSentimentScorer
from gateway.session import EventStream, Session, SessionLimits
from gateway.speakers import SpeakerOptions
from gateway.workers import Workers

__all__ = ["SpeechAnalysisServiceServicer", "Admission"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Admission:
    """What the gateway lets into a session at all (the per-session limits are SessionLimits)."""

    max_sessions: int = 16
    idle_timeout_s: float = 30.0
    max_file_bytes: int = 8 * 1024 * 1024
    max_audio_message_bytes: int = 8 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.max_sessions < 1 or self.idle_timeout_s <= 0 or self.max_file_bytes < 1:
            raise ValueError("MAX_SESSIONS, IDLE_TIMEOUT_S and MAX_FILE_BYTES must be positive")


def _mebibytes(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


class SpeechAnalysisServiceServicer(gateway_pb2_grpc.SpeechAnalysisServiceServicer):
    def __init__(self, workers: Workers, limits: SessionLimits, admission: Admission,
                 sentiment: TextSentimentScorer | None = None):
        self.workers = workers
        self.limits = limits
        self.admission = admission
        self.sentiment = sentiment
        self.active = 0

    @contextlib.contextmanager
    def _slot(self, method: str):
        if self.active >= self.admission.max_sessions:
            raise Overloaded(f"the gateway is at its limit of {self.admission.max_sessions} concurrent "
                             "sessions; retry later")
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1

    @contextlib.contextmanager
    def _channel_slots(self, config: gateway_pb2.StreamConfig, channels: int):
        """The extra slots of a CHANNEL_MODE_SEPARATE stream (one per channel, the first
        already taken by ``_slot``): each channel is a VAD stream and its own analyses."""
        extra = channels - 1 if separate_channels(config) else 0
        if self.active + extra > self.admission.max_sessions:
            raise Overloaded(f"a CHANNEL_MODE_SEPARATE stream of {channels} channels takes {channels} of the "
                             f"gateway's {self.admission.max_sessions} concurrent sessions (one per channel) "
                             "and too few are free; retry later")
        with contextlib.ExitStack() as slots:
            for _ in range(extra):
                slots.enter_context(self._slot("channel"))
            yield

    def _check_config(self, config: gateway_pb2.StreamConfig, *, audio_format_required: bool = True) -> None:
        validate_config(config, audio_format_required=audio_format_required)
        if config.text_sentiment and self.sentiment is None:
            raise NotEnabled("config.text_sentiment: text sentiment is off on this gateway; start it with "
                             "TEXT_SENTIMENT=1 (loads SnowNLP, +410 MiB)")
        SpeakerOptions.from_config(config.speaker_labels)  # bounds checked even when off
        if config.speaker_labels.enabled and self.workers.speaker is None:
            raise NotEnabled("config.speaker_labels: this gateway has no speaker worker; run one "
                             "(speech-analysis-speaker) and start the gateway with SPEAKER_ADDRESS=<host:port>")

    def _session(self, config: gateway_pb2.StreamConfig, context: grpc.aio.ServicerContext | None
                 ) -> Session | Conversation:
        deadline = deadline_of(context)
        session_id = uuid.uuid4().hex[:12]
        if separate_channels(config):
            session = Conversation(session_id, config, config.channels or 1, self.workers, self.limits, deadline,
                                   self.sentiment)
        else:
            session = Session(session_id, config, self.workers, self.limits, deadline, self.sentiment)
        session.log.info("started (mode %s, %d Hz x %d%s, %s)", session.mode_name,
                         config.sample_rate_hz, config.channels or 1,
                         " separate" if separate_channels(config) else "",
                         common_pb2.AudioEncoding.Name(config.encoding))
        return session

    async def _run_session(self, session: EventStream, audio: AsyncIterator[np.ndarray],
                           method: str) -> AsyncIterator[gateway_pb2.AnalyzeResponse]:
        """Drive ``session``; log one end line whatever the outcome."""
        outcome = "OK"
        try:
            async for event in session.events(audio):
                yield event
        except (asyncio.CancelledError, GeneratorExit):
            outcome = "CANCELLED (client gone)"
            raise
        except BaseException as exc:
            outcome = status_for(exc)[0].name
            raise
        finally:
            line = session.finished_line()
            if outcome == "OK":
                session.log.info("finished: %s", line)
            else:
                session.log.info("ended with %s after %s", outcome, line)

    async def _idle_bounded(self, messages: AsyncIterator) -> AsyncIterator:
        """``messages``, ending the stream with OUT_OF_RANGE if the client goes quiet."""
        iterator = aiter(messages)
        idle_s = self.admission.idle_timeout_s
        while True:
            try:
                async with asyncio.timeout(idle_s):
                    data = await anext(iterator)
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise OutOfRange(f"no audio for {idle_s:g} s (IDLE_TIMEOUT_S): send audio continuously "
                                 "and half-close the stream when done") from None
            yield data

    async def _stream(self, config: gateway_pb2.StreamConfig, chunks: AsyncIterator[bytes],
                      context: grpc.aio.ServicerContext | None, method: str
                      ) -> AsyncIterator[gateway_pb2.AnalyzeResponse]:
        self._check_config(config)
        converter = AudioConverter(config.sample_rate_hz, config.encoding, config.channels,
                                   separate=separate_channels(config))
        with self._channel_slots(config, converter.channels):
            session = self._session(config, context)
            async for event in self._run_session(session, self._client_audio(chunks, converter), method):
                yield event

    async def _client_audio(self, chunks: AsyncIterator[bytes], converter: AudioConverter
                            ) -> AsyncIterator[np.ndarray]:
        """The client's audio messages, checked and converted."""
        async for data in chunks:
            if len(data) > self.admission.max_audio_message_bytes:
                raise InvalidInput(
                    f"an audio message of {_mebibytes(len(data))} is over the limit of "
                    f"{_mebibytes(self.admission.max_audio_message_bytes)} (MAX_MESSAGE_BYTES); send "
                    "smaller chunks (100-500 ms of audio each is typical)")
            samples = converter.convert(data)
            if samples.size:
                yield samples
        tail = converter.finish()
        if tail.size:
            yield tail

    async def stream_session(self, config: gateway_pb2.StreamConfig, chunks: AsyncIterator[bytes],
                             context: grpc.aio.ServicerContext | None = None,
                             method: str = "Analyze") -> AsyncIterator[gateway_pb2.AnalyzeResponse]:
        """The streaming path for callers that parsed the config themselves (WebSocket bridge)."""
        with self._slot(method):
            async for event in self._stream(config, self._idle_bounded(chunks), context, method):
                yield event

    async def Analyze(self, request_iterator: AsyncIterator[gateway_pb2.AnalyzeRequest],
                      context: grpc.aio.ServicerContext) -> AsyncIterator[gateway_pb2.AnalyzeResponse]:
        with self._slot("Analyze"):  # counted from the first moment, config or not
            requests = self._idle_bounded(self._read_requests(context))
            first = await anext(requests, None)
            if first is None:
                raise InvalidInput("empty stream: the first AnalyzeRequest must carry a StreamConfig")
            if first.WhichOneof("payload") != "config":
                raise InvalidInput("the first AnalyzeRequest must carry a StreamConfig, not audio")

            async def chunks() -> AsyncIterator[bytes]:
                async for request in requests:
                    if request.WhichOneof("payload") != "audio":
                        raise InvalidInput("only the first AnalyzeRequest may carry a StreamConfig")
                    yield request.audio

            async for event in self._stream(first.config, chunks(), context, "Analyze"):
                yield event

    @staticmethod
    async def _read_requests(context: grpc.aio.ServicerContext) -> AsyncIterator[gateway_pb2.AnalyzeRequest]:
        """The client's messages, read in this task (the handler's), so a timeout or a failed
        session can stop reading without another task still inside the request iterator."""
        while (request := await context.read()) is not grpc.aio.EOF:
            yield request

    async def AnalyzeFile(self, request: gateway_pb2.AnalyzeFileRequest,
                          context: grpc.aio.ServicerContext) -> gateway_pb2.AnalyzeFileResponse:
        with self._slot("AnalyzeFile"):
            self._check_config(request.config, audio_format_required=False)
            size, limit = len(request.content), self.admission.max_file_bytes
            if size > limit:
                raise InvalidInput(
                    f"the file is {_mebibytes(size)}; AnalyzeFile accepts at most {_mebibytes(limit)} "
                    "(MAX_FILE_BYTES). Stream longer recordings with Analyze, which has no size limit "
                    "(only MAX_SESSION_S of audio)")
            decoder = await asyncio.to_thread(FileDecoder, request.content, self.limits.max_session_s)
            try:
                events = [event async for event in self._analyze_decoded(decoder, request.config, context)]
            finally:
                decoder.close()
            return gateway_pb2.AnalyzeFileResponse(events=events)

    async def _analyze_decoded(self, decoder: FileDecoder, file_config: gateway_pb2.StreamConfig,
                               context: grpc.aio.ServicerContext) -> AsyncIterator[gateway_pb2.AnalyzeResponse]:
        first = await asyncio.to_thread(decoder.read_block)
        if not first.size:
            raise InvalidInput("the file decodes to no audio (truncated or empty)")
        if separate_channels(file_config):
            check_separate_channels(decoder.channels)
        converter = AudioConverter(decoder.sample_rate_hz, common_pb2.AUDIO_ENCODING_FLOAT32LE, decoder.channels,
                                   separate=separate_channels(file_config))
        config = gateway_pb2.StreamConfig()
        config.CopyFrom(file_config)
        config.sample_rate_hz, config.encoding, config.channels = (
            decoder.sample_rate_hz, common_pb2.AUDIO_ENCODING_FLOAT32LE, decoder.channels)
        with self._channel_slots(config, decoder.channels):
            session = self._session(config, context)
            async for event in self._run_decoded(session, decoder, converter, first):
                yield event

    async def _run_decoded(self, session: EventStream, decoder: FileDecoder, converter: AudioConverter,
                           first: np.ndarray) -> AsyncIterator[gateway_pb2.AnalyzeResponse]:
        """Drive ``session`` with the file's audio, ``first`` block already decoded."""
        async def file_audio() -> AsyncIterator[np.ndarray]:
            block = first
            while block.size:  # one ~1 MB block decoded at a time, off the event loop
                yield converter.convert_frames(block)
                block = await asyncio.to_thread(decoder.read_block)
            tail = converter.finish()
            if tail.size:
                yield tail

        async for event in self._run_session(session, file_audio(), "AnalyzeFile"):
            if event.WhichOneof("event") == "summary" and (note := decoder.truncation_note()):
                yield gateway_pb2.AnalyzeResponse(session_id=session.id, error=gateway_pb2.ErrorEvent(
                    code=grpc.StatusCode.DATA_LOSS.name, message=note))
            yield event
