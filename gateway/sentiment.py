"""Optional text sentiment of transcripts with SnowNLP (offline; its model ships in the package).

Off by default (``StreamConfig.text_sentiment``). SnowNLP's sentiment model
loads lazily (~3-4 s the first time), so it is loaded once, in a thread, and
shared. It is trained on Chinese product reviews: a rough polarity signal for
Chinese text, not an emotion classifier.
"""

from __future__ import annotations

import asyncio
import threading

from protos.v1 import gateway_pb2

__all__ = ["score_text", "NEUTRAL_BAND"]

NEUTRAL_BAND = (0.4, 0.6)
"""Positive probabilities inside this band are labelled "neutral"."""

_lock = threading.Lock()


def _score_sync(text: str) -> gateway_pb2.TextSentiment:
    with _lock:  # SnowNLP's lazy model load is not thread-safe
        from snownlp import SnowNLP

        positive = float(SnowNLP(text).sentiments)
    low, high = NEUTRAL_BAND
    label = "positive" if positive >= high else "negative" if positive <= low else "neutral"
    return gateway_pb2.TextSentiment(positive_probability=positive, label=label)


async def score_text(text: str) -> gateway_pb2.TextSentiment | None:
    """Sentiment of ``text``, or None for empty text. Runs off the event loop."""
    if not text.strip():
        return None
    return await asyncio.to_thread(_score_sync, text)
