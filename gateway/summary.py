"""The session summary: transcript, speech time and emotion distribution over all segments.

Usage::

    summary = SummaryBuilder()
    summary.add(segment_result)          # once per finished segment, in any order
    proto = summary.to_proto(audio_ms)   # gateway_pb2.SessionSummary

The dominant emotion is the label with the largest share of speech time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from speech_analysis.v1 import gateway_pb2

__all__ = ["EMOTION_DISPLAY", "SummaryBuilder"]

EMOTION_DISPLAY = {"neu": "中性", "ang": "生气", "hap": "开心", "sad": "悲伤"}
# SenseVoice's emotion tags mapped onto the SpeechBrain classes for the session summary.
_SENSEVOICE_TO_CLASS = {"NEUTRAL": "neu", "ANGRY": "ang", "HAPPY": "hap", "SAD": "sad"}
_SOURCE_PREFERENCE = ("speechbrain", "sensevoice")
"""Which emotion a segment counts with when several sources ran: SpeechBrain's has
probabilities for every class, SenseVoice's only its top tag."""


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
    weighted: dict[str, float] = field(default_factory=dict)  # label -> sum of probability x duration_ms
    time_ms: dict[str, int] = field(default_factory=dict)  # label -> dominant speech time
    segments_dominated: dict[str, int] = field(default_factory=dict)  # label -> segments it dominated
    emotion_ms: int = 0  # speech time of segments with an emotion
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
        label = _SENSEVOICE_TO_CLASS.get(emotion.label, emotion.label)
        self.emotion_ms += duration
        self.time_ms[label] = self.time_ms.get(label, 0) + duration
        self.segments_dominated[label] = self.segments_dominated.get(label, 0) + 1
        for score in emotion.probabilities:
            key = _SENSEVOICE_TO_CLASS.get(score.label, score.label)
            self.weighted[key] = self.weighted.get(key, 0.0) + score.probability * duration

    def _shares(self) -> dict[str, float]:
        if self.emotion_ms:
            return {label: ms / self.emotion_ms for label, ms in self.time_ms.items()}
        # Only zero-length segments had an emotion: count segments instead, so the
        # shares still sum to 1 over the labels that dominated.
        count = sum(self.segments_dominated.values())
        return {label: n / count for label, n in self.segments_dominated.items()} if count else {}

    def to_proto(self, audio_ms: int) -> gateway_pb2.SessionSummary:
        shares = self._shares()
        means = {label: weight / self.emotion_ms if self.emotion_ms else 0.0
                 for label, weight in self.weighted.items()}
        labels = sorted(set(shares) | set(means),
                        key=lambda label: (-shares.get(label, 0.0), -means.get(label, 0.0), label))
        distribution = [
            gateway_pb2.EmotionShare(label=label, display_name=EMOTION_DISPLAY.get(label, label),
                                     share=shares.get(label, 0.0), duration_ms=self.time_ms.get(label, 0),
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
            dominant_emotion_display_name=EMOTION_DISPLAY.get(dominant, dominant),
            emotion_distribution=distribution,
            random_weights=self.random_weights)


def _is_cjk(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)
