"""The session summary: transcript, speech time and emotion distribution over all segments.

Usage::

    summary = SummaryBuilder()
    summary.add(segment_result)          # once per finished segment, in any order
    proto = summary.to_proto(audio_ms)   # gateway_pb2.SessionSummary
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
    transcript: dict[int, str] = field(default_factory=dict)  # segment id -> text
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
            self.transcript[result.segment_id] = result.text
        self.random_weights |= result.random_weights
        emotion = _segment_emotion(result)
        if emotion is None:
            return
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
            for label, weight in sorted(self.weighted.items(), key=lambda kv: (-kv[1], kv[0]))]
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
