"""Optional text sentiment of transcripts with SnowNLP (offline; its model ships in the package).

Off unless the gateway starts with ``TEXT_SENTIMENT=1``: then
:func:`load_sentiment` loads SnowNLP's model once at start (~3 s and about
+410 MiB resident), in a thread, before the gateway reports SERVING, so no
stream ever waits for it and the event loop never stalls. A stream that asks
for ``text_sentiment`` on a gateway without it gets ``FAILED_PRECONDITION``
(see the servicer). The model is trained on Chinese product reviews: a rough
polarity signal for Chinese text, not an emotion classifier.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Callable

from speech_analysis.v1 import gateway_pb2

__all__ = ["TextSentimentScorer", "load_sentiment", "NEUTRAL_BAND"]

NEUTRAL_BAND = (0.4, 0.6)
"""Positive probabilities inside this band are labelled "neutral"."""


class TextSentimentScorer:
    """Scores text with a loaded SnowNLP; :meth:`score` runs off the event loop."""

    def __init__(self, positive_probability: Callable[[str], float]):
        self._positive = positive_probability
        self._lock = threading.Lock()  # SnowNLP's classifier keeps per-call state

    def _score_sync(self, text: str) -> gateway_pb2.TextSentiment:
        with self._lock:
            positive = float(self._positive(text))
        low, high = NEUTRAL_BAND
        label = "positive" if positive >= high else "negative" if positive <= low else "neutral"
        return gateway_pb2.TextSentiment(positive_probability=positive, label=label)

    async def score(self, text: str) -> gateway_pb2.TextSentiment | None:
        """Sentiment of ``text``, or None for empty text."""
        if not text.strip():
            return None
        return await asyncio.to_thread(self._score_sync, text)


def load_sentiment() -> TextSentimentScorer:
    """Import SnowNLP and load its sentiment model now (blocking: call it in a thread)."""
    from snownlp import SnowNLP

    float(SnowNLP("加载").sentiments)  # SnowNLP loads its model lazily, on the first use
    return TextSentimentScorer(lambda text: SnowNLP(text).sentiments)
