"""The session summary: transcript, speech time and emotion distribution over all segments.

Usage::

    summary = SummaryBuilder()
    summary.add(segment_result)          # once per finished segment, in any order
    proto = summary.to_proto(audio_ms)   # gateway_pb2.SessionSummary
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from speech_analysis.v1 import gateway_pb2

from services.common.emotion_labels import display_name, sensevoice_label

__all__ = ["SummaryBuilder"]

_SOURCE_PREFERENCE = ("speechbrain", "emotion2vec", "sensevoice")
"""Which emotion a segment counts with when several sources ran: the emotion worker's
(SpeechBrain or emotion2vec+) has probabilities for every class, SenseVoice's only its
top tag."""


def _segment_emotion(result: gateway_pb2.SegmentResult) -> gateway_pb2.EmotionResult | None:
    by_source = {emotion.source: emotion for emotion in result.emotions}
    for source in _SOURCE_PREFERENCE:
        if source in by_source:
            return by_source[source]
    return result.emotions[0] if result.emotions else None


@dataclass
class SummaryBuilder:
    """Accumulates finished segments; each segment counts with its duration.

    Per emotion label the summary reports ``duration_ms`` (speech time whose
    dominant emotion is the label), ``share`` (that time as a fraction of the
    speech time that had an emotion, so shares sum to 1) and ``mean_probability``
    (the label's probability averaged over that speech time, weighted by segment
    duration: a label can have a mean probability without ever dominating).
    """

    transcript: dict[int, str] = field(default_factory=dict)  # segment id -> text
    speech_ms: int = 0
    # (source, label, [(label, probability)], duration_ms) per segment that has an emotion;
    # labels are resolved in to_proto, once the session's vocabulary is known
    emotions: list[tuple[str, str, list[tuple[str, float]], int]] = field(default_factory=list)
    random_weights: bool = False
    segments: int = 0

    def add(self, result: gateway_pb2.SegmentResult) -> None:
        self.segments += 1
        duration = result.end_ms - result.start_ms
        self.speech_ms += duration
        if result.text:
            self.transcript[result.segment_id] = result.text
        self.random_weights |= result.random_weights
        emotion = _segment_emotion(result)
        if emotion is None:
            return
        self.emotions.append((emotion.source, emotion.label,
                              [(score.label, score.probability) for score in emotion.probabilities], duration))

    def _distribution(self) -> tuple[dict[str, int], dict[str, float], dict[str, int]]:
        """Per label: dominant speech time, probability x duration, segments dominated.

        SenseVoice tags join the vocabulary of the session's emotion worker: IEMOCAP codes
        when SpeechBrain classified any segment (NEUTRAL counts as "neu"), else the nine
        emotion2vec+ labels (NEUTRAL counts as "neutral")."""
        iemocap = any(source == "speechbrain" for source, *_ in self.emotions)
        time_ms: dict[str, int] = {}
        weighted: dict[str, float] = {}
        dominated: dict[str, int] = {}
        for source, label, scores, duration in self.emotions:
            key = functools.partial(sensevoice_label, iemocap=iemocap) if source == "sensevoice" else str
            time_ms[key(label)] = time_ms.get(key(label), 0) + duration
            dominated[key(label)] = dominated.get(key(label), 0) + 1
            for code, probability in scores:
                weighted[key(code)] = weighted.get(key(code), 0.0) + probability * duration
        return time_ms, weighted, dominated

    def to_proto(self, audio_ms: int) -> gateway_pb2.SessionSummary:
        time_ms, weighted, dominated = self._distribution()
        emotion_ms = sum(time_ms.values())
        if emotion_ms:
            shares = {label: ms / emotion_ms for label, ms in time_ms.items()}
        else:  # only zero-length segments had an emotion: count segments, so shares still sum to 1
            count = sum(dominated.values())
            shares = {label: n / count for label, n in dominated.items()} if count else {}
        means = {label: weight / emotion_ms if emotion_ms else 0.0 for label, weight in weighted.items()}
        labels = sorted(set(shares) | set(means),
                        key=lambda label: (-shares.get(label, 0.0), -means.get(label, 0.0), label))
        distribution = [
            gateway_pb2.EmotionShare(label=label, display_name=display_name(label),
                                     share=shares.get(label, 0.0), duration_ms=time_ms.get(label, 0),
                                     mean_probability=means.get(label, 0.0))
            for label in labels]
        dominant = distribution[0].label if distribution else ""
        texts = [self.transcript[i] for i in sorted(self.transcript)]
        joined = "".join(texts)
        return gateway_pb2.SessionSummary(
            transcript=joined if _is_cjk(joined) else " ".join(texts),
            segment_count=self.segments,
            audio_duration_ms=audio_ms,
            speech_duration_ms=self.speech_ms,
            silence_duration_ms=max(audio_ms - self.speech_ms, 0),
            dominant_emotion=dominant,
            dominant_emotion_display_name=display_name(dominant) if dominant else "",
            emotion_distribution=distribution,
            random_weights=self.random_weights)


def _is_cjk(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)
