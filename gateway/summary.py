"""The session summary: transcript, speech time and emotion distribution over all segments.

Usage::

    summary = SummaryBuilder()
    summary.add(segment_result)          # once per finished segment, in any order
    proto = summary.to_proto(audio_ms)   # gateway_pb2.SessionSummary

A CHANNEL_MODE_SEPARATE session keeps one builder per channel and joins them::

    proto = conversation_summary(builders, audio_ms)   # adds .channels and .conversation

With speaker labels every builder also keeps one builder per speaker
(``SummaryBuilder.speakers``), from which ``to_proto`` fills ``.speakers``; a
downmixed stream's conversation figures are then over speakers
(:func:`speaker_conversation`).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field

from speech_analysis.v1 import gateway_pb2

from services.common.emotion_labels import display_name, sensevoice_label

__all__ = ["SummaryBuilder", "ConversationFigures", "conversation_figures", "conversation_summary",
           "speaker_conversation"]

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
    spans_ms: list[tuple[int, int]] = field(default_factory=list)  # (start_ms, end_ms) per segment
    speakers: dict[int, "SummaryBuilder"] = field(default_factory=dict)  # label -> that speaker's segments

    @property
    def segments(self) -> int:
        return len(self.spans_ms)

    def add(self, result: gateway_pb2.SegmentResult) -> None:
        self._count(result)
        if result.speaker:
            self.speakers.setdefault(result.speaker, SummaryBuilder())._count(result)

    def _count(self, result: gateway_pb2.SegmentResult) -> None:
        self.spans_ms.append((result.start_ms, result.end_ms))
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

    @classmethod
    def merged(cls, builders: "list[SummaryBuilder]") -> "SummaryBuilder":
        """One builder over the segments of all ``builders`` (segment ids are unique across them)."""
        everything = cls()
        for builder in builders:
            everything.transcript.update(builder.transcript)
            everything.speech_ms += builder.speech_ms
            everything.emotions.extend(builder.emotions)
            everything.random_weights |= builder.random_weights
            everything.spans_ms.extend(builder.spans_ms)
        for label in sorted({label for builder in builders for label in builder.speakers}):
            everything.speakers[label] = cls.merged([b.speakers[label] for b in builders if label in b.speakers])
        return everything

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
        summary = gateway_pb2.SessionSummary(
            transcript=joined if _is_cjk(joined) else " ".join(texts),
            segment_count=self.segments,
            audio_duration_ms=audio_ms,
            speech_duration_ms=self.speech_ms,
            silence_duration_ms=max(audio_ms - self.speech_ms, 0),
            dominant_emotion=dominant,
            dominant_emotion_display_name=display_name(dominant) if dominant else "",
            emotion_distribution=distribution,
            random_weights=self.random_weights)
        if self.speakers:
            labels = sorted(self.speakers)
            talk_ms = [_covered_ms(self.speakers[label].spans_ms, 1) for label in labels]
            summary.speakers.extend(
                gateway_pb2.SpeakerSummary(speaker=label, **_party(self.speakers[label], audio_ms, talk, share))
                for label, talk, share in zip(labels, talk_ms, _shares(talk_ms)))
        return summary


@dataclass(frozen=True)
class ConversationFigures:
    """The conversation figures of ConversationSummary (see its proto comments)."""

    talk_ms: list[int]  # per channel: time inside the channel's segments
    overlap_ms: int  # time where >= 2 channels are inside a segment
    speech_ms: int  # time where >= 1 channel is inside a segment
    silence_ms: int  # audio time where no channel is inside a segment
    turn_count: int  # changes of the channel holding the floor

    @property
    def talk_shares(self) -> list[float]:
        return _shares(self.talk_ms)


def _shares(talk_ms: list[int]) -> list[float]:
    """Each party's fraction of the summed talk time (all 0 when nobody spoke)."""
    total = sum(talk_ms)
    return [ms / total if total else 0.0 for ms in talk_ms]


def _covered_ms(spans: list[tuple[int, int]], at_least: int) -> int:
    """Time covered by ``at_least`` of ``spans`` at once (half-open intervals)."""
    edges = sorted([(start, 1) for start, end in spans if end > start] +
                   [(end, -1) for start, end in spans if end > start])
    covered, depth, last = 0, 0, 0
    for at, step in edges:
        if depth >= at_least:
            covered += at - last
        depth, last = depth + step, at
    return covered


def conversation_figures(spans_by_channel: list[list[tuple[int, int]]], audio_ms: int) -> ConversationFigures:
    """Talk time, overlap, silence and floor changes of per-channel ``(start_ms, end_ms)`` lists."""
    # A channel's own segments never overlap, but merge them anyway so a channel counts once.
    talk = [_covered_ms(spans, 1) for spans in spans_by_channel]
    merged = [(start, end, channel) for channel, spans in enumerate(spans_by_channel)
              for start, end in (_merged(spans))]
    overlap = _covered_ms([(start, end) for start, end, _ in merged], 2)
    speech = _covered_ms([(start, end) for start, end, _ in merged], 1)
    turns, holder = 0, None
    for start, end, channel in sorted(merged):
        inside_other = any(o_start <= start and end <= o_end
                           for o_start, o_end, other in merged if other != channel)
        if inside_other:
            continue  # a back-channel does not take the floor
        if holder is not None and channel != holder:
            turns += 1
        holder = channel
    return ConversationFigures(talk_ms=talk, overlap_ms=overlap, speech_ms=speech,
                               silence_ms=max(audio_ms - speech, 0), turn_count=turns)


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """``spans`` sorted, with touching or overlapping ones joined."""
    out: list[list[int]] = []
    for start, end in sorted(spans):
        if out and start <= out[-1][1]:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return [(start, end) for start, end in out]


def conversation_summary(builders: list[SummaryBuilder], audio_ms: int) -> gateway_pb2.SessionSummary:
    """The summary of a CHANNEL_MODE_SEPARATE session with one builder per channel.

    The top-level figures are over all channels' segments (segment ids are unique
    across channels, so the transcript is in segment order); speech and silence
    count time, not segments, so cross-talk is not counted twice.
    """
    figures = conversation_figures([builder.spans_ms for builder in builders], audio_ms)
    summary = SummaryBuilder.merged(builders).to_proto(audio_ms)
    summary.speech_duration_ms = figures.speech_ms
    summary.silence_duration_ms = figures.silence_ms
    for channel, (builder, talk_ms, share) in enumerate(zip(builders, figures.talk_ms, figures.talk_shares)):
        summary.channels.append(gateway_pb2.ChannelSummary(
            channel=channel, **_party(builder, audio_ms, talk_ms, share)))
    summary.conversation.CopyFrom(_conversation_proto(figures, audio_ms))
    return summary


def speaker_conversation(builder: SummaryBuilder, summary: gateway_pb2.SessionSummary) -> None:
    """Fill a downmixed stream's ``summary.conversation`` with figures over its speakers.

    Turns count changes between labelled speakers; silence stays the summary's own
    (time outside every segment, labelled or not), so an unlabelled segment is not silence.
    """
    figures = conversation_figures([builder.speakers[label].spans_ms for label in sorted(builder.speakers)],
                                   summary.audio_duration_ms)
    figures = dataclasses.replace(figures, silence_ms=summary.silence_duration_ms)
    summary.conversation.CopyFrom(_conversation_proto(figures, summary.audio_duration_ms))


def _conversation_proto(figures: ConversationFigures, audio_ms: int) -> gateway_pb2.ConversationSummary:
    return gateway_pb2.ConversationSummary(
        overlap_ms=figures.overlap_ms, silence_ms=figures.silence_ms,
        silence_share=figures.silence_ms / audio_ms if audio_ms else 0.0, turn_count=figures.turn_count)


def _party(builder: SummaryBuilder, audio_ms: int, talk_ms: int, share: float) -> dict:
    """The fields ChannelSummary and SpeakerSummary share, for one channel or speaker."""
    own = builder.to_proto(audio_ms)
    return dict(transcript=own.transcript, segment_count=own.segment_count, talk_time_ms=talk_ms,
                talk_time_share=share, dominant_emotion=own.dominant_emotion,
                dominant_emotion_display_name=own.dominant_emotion_display_name,
                emotion_distribution=own.emotion_distribution)


def _is_cjk(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)
