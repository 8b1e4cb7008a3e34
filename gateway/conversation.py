"""A CHANNEL_MODE_SEPARATE stream: one Session per channel, one event stream out.

Each channel (one speaker of a call, say) is analysed on its own by a
:class:`~gateway.session.Session` running the usual pipeline on its own VAD
stream; the channels' Sessions share the output queue and the counter that
numbers segments, so the client sees one stream of events, each naming its
channel, with segment ids unique in the stream and results in segment order
within each channel. This module only splits the client's frames by channel
and joins the channels' summaries::

    client frames (samples x channels) --_split--> one feed per channel
    feed c --Session(channel=c).analyze--> events on the shared queue
    after every channel ends ------------> conversation_summary(...) --> client
"""

from __future__ import annotations

import asyncio
import itertools
from typing import AsyncIterator

import numpy as np

from speech_analysis.v1 import gateway_pb2
from services.common.audio import samples_to_ms
from gateway.sentiment import TextSentimentScorer
from gateway.session import EventStream, Session, SessionLimits, session_log, speaker_clusterer
from gateway.summary import conversation_summary
from gateway.workers import Workers

__all__ = ["Conversation"]

_FEED_CHUNKS = 2
"""Chunks waiting per channel: a channel whose VAD lags holds the splitter, and through it
the client, just as one Session's back-pressure does."""
_FEED_END = None


class Conversation(EventStream):
    """Runs one CHANNEL_MODE_SEPARATE stream; iterate :meth:`events` with frames x channels."""

    def __init__(self, session_id: str, config: gateway_pb2.StreamConfig, channels: int, workers: Workers,
                 limits: SessionLimits, deadline_s: float | None = None,
                 sentiment: TextSentimentScorer | None = None):
        self.id = session_id
        self._out = asyncio.Queue(maxsize=64)
        segment_ids, speakers = itertools.count(), speaker_clusterer(config)
        self.channels = [Session(session_id, config, workers, limits, deadline_s, sentiment, channel=channel,
                                 out=self._out, segment_ids=segment_ids, speakers=speakers)
                         for channel in range(channels)]
        self.mode_name, self.sentiment = self.channels[0].mode_name, self.channels[0].sentiment
        self.log = session_log(session_id)

    def finished_line(self) -> str:
        """What the log says when the session ends."""
        return "; ".join(f"channel {session.channel}: {session.finished_line()}" for session in self.channels)

    async def analyze(self, client_audio: AsyncIterator[np.ndarray]) -> None:
        feeds = [asyncio.Queue(maxsize=_FEED_CHUNKS) for _ in self.channels]
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._split(client_audio, feeds))
            for session, feed in zip(self.channels, feeds):
                tasks.create_task(session.analyze(_drain(feed)))

    @staticmethod
    async def _split(client_audio: AsyncIterator[np.ndarray], feeds: list[asyncio.Queue]) -> None:
        async for frames in client_audio:
            for channel, feed in enumerate(feeds):
                await feed.put(np.ascontiguousarray(frames[:, channel]))
        for feed in feeds:
            await feed.put(_FEED_END)

    async def _summary(self) -> gateway_pb2.SessionSummary:
        audio_ms = samples_to_ms(max(session.buffer.end for session in self.channels))
        summary = conversation_summary([session.summary for session in self.channels], audio_ms)
        if self.sentiment is not None:
            for part in (summary, *summary.channels, *summary.speakers):
                if part.transcript and (sentiment := await self.sentiment.score(part.transcript)) is not None:
                    part.sentiment.CopyFrom(sentiment)
        return summary


async def _drain(feed: asyncio.Queue) -> AsyncIterator[np.ndarray]:
    while (samples := await feed.get()) is not _FEED_END:
        yield samples
