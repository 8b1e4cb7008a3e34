"""One emotion vocabulary for both emotion models and SenseVoice's tags (issue #19).

Unit tests of services/common/emotion_labels.py and of the session summary with
nine classes; the processes are exercised in tests/test_emotion2vec_end_to_end.py.
"""

from __future__ import annotations

import pytest

from gateway.summary import SummaryBuilder
from speech_analysis.v1 import common_pb2, gateway_pb2
from services.asr.sensevoice_tags import EMOTIONS, parse_sensevoice
from services.common.emotion_labels import (
    DISPLAY_NAMES,
    EMOTION2VEC_LABELS,
    IEMOCAP_LABELS,
    display_name,
    emotion2vec_label,
    emotion_source,
    sensevoice_label,
)
from services.emotion import engine


def test_every_label_of_both_models_has_a_chinese_display_name():
    for label in IEMOCAP_LABELS + EMOTION2VEC_LABELS:
        assert any("\u4e00" <= ch <= "\u9fff" for ch in DISPLAY_NAMES[label]), label
    # the same emotion is shown the same way whichever model found it
    for iemocap, nine in (("neu", "neutral"), ("ang", "angry"), ("hap", "happy"), ("sad", "sad")):
        assert DISPLAY_NAMES[iemocap] == DISPLAY_NAMES[nine]
    assert display_name("bored") == "bored"


def test_one_home_for_display_names():
    assert engine.DISPLAY_NAMES is DISPLAY_NAMES
    assert all(EMOTIONS[tag] == DISPLAY_NAMES[sensevoice_label(tag)] for tag in EMOTIONS)
    assert parse_sensevoice("<|zh|><|FEARFUL|><|Speech|><|woitn|>好").emotion.display_name == "恐惧"


@pytest.mark.parametrize("token, label", [("生气/angry", "angry"), ("吃惊/surprised", "surprised"),
                                          ("<unk>", "unknown"), ("neutral", "neutral")])
def test_emotion2vec_token_to_label(token, label):
    assert emotion2vec_label(token) == label


def test_sensevoice_tags_map_onto_the_vocabulary_in_use():
    assert [sensevoice_label(t) for t in ("NEUTRAL", "FEARFUL", "SURPRISED", "unknown")] == [
        "neutral", "fearful", "surprised", "unknown"]
    assert [sensevoice_label(t, iemocap=True) for t in ("NEUTRAL", "ANGRY", "HAPPY", "SAD", "FEARFUL")] == [
        "neu", "ang", "hap", "sad", "fearful"]


def test_emotion_source_follows_the_worker_model():
    assert emotion_source(["emotion2vec_plus_base"]) == "emotion2vec"
    assert emotion_source(["emotion-recognition-wav2vec2-IEMOCAP"]) == "speechbrain"


def _segment(segment_id, start, end, emotions):
    return gateway_pb2.SegmentResult(
        segment_id=segment_id, start_ms=start, end_ms=end,
        emotions=[gateway_pb2.EmotionResult(source=source, label=label, probabilities=[
            common_pb2.EmotionScore(label=k, probability=v) for k, v in probs.items()])
            for source, label, probs in emotions])


def test_summary_with_nine_classes_is_duration_weighted_with_display_names():
    summary = SummaryBuilder()
    summary.add(_segment(0, 0, 1000, [("emotion2vec", "fearful", {"fearful": 0.8, "surprised": 0.2})]))
    summary.add(_segment(1, 1000, 4000, [("emotion2vec", "surprised", {"surprised": 0.5, "other": 0.5})]))
    proto = summary.to_proto(4000)
    # share: fraction of speech time dominated; mean_probability: duration-weighted probability
    assert {d.label: d.share for d in proto.emotion_distribution} == pytest.approx(
        {"fearful": 0.25, "surprised": 0.75, "other": 0.0})
    assert {d.label: d.mean_probability for d in proto.emotion_distribution} == pytest.approx(
        {"fearful": 0.2, "surprised": 0.425, "other": 0.375})
    assert {d.label: d.duration_ms for d in proto.emotion_distribution} == {
        "fearful": 1000, "surprised": 3000, "other": 0}
    assert {d.label: d.display_name for d in proto.emotion_distribution} == {
        "fearful": "恐惧", "surprised": "惊讶", "other": "其他"}
    assert (proto.dominant_emotion, proto.dominant_emotion_display_name) == ("surprised", "惊讶")


def test_summary_prefers_the_emotion_worker_and_maps_sensevoice_tags_into_its_vocabulary():
    # emotion2vec+ worker: a segment where only SenseVoice answered counts as "neutral", not "NEUTRAL"
    nine = SummaryBuilder()
    nine.add(_segment(0, 0, 1000, [("sensevoice", "HAPPY", {"HAPPY": 1.0}),
                                   ("emotion2vec", "neutral", {"neutral": 1.0})]))
    nine.add(_segment(1, 1000, 2000, [("sensevoice", "NEUTRAL", {"NEUTRAL": 1.0})]))
    proto = nine.to_proto(2000)
    assert {d.label: d.duration_ms for d in proto.emotion_distribution} == {"neutral": 2000}
    assert proto.dominant_emotion_display_name == "中性"

    # SpeechBrain worker: the same tag counts as "neu", in whichever order segments arrive
    four_forward, four_backward = SummaryBuilder(), SummaryBuilder()
    a = _segment(0, 0, 1000, [("sensevoice", "NEUTRAL", {"NEUTRAL": 1.0})])
    b = _segment(1, 1000, 2000, [("speechbrain", "neu", {"neu": 1.0})])
    four_forward.add(a), four_forward.add(b)
    four_backward.add(b), four_backward.add(a)
    assert four_forward.to_proto(2000) == four_backward.to_proto(2000)
    assert {d.label: d.duration_ms for d in four_forward.to_proto(2000).emotion_distribution} == {"neu": 2000}


def test_sensevoice_only_session_uses_the_nine_class_vocabulary():
    summary = SummaryBuilder()
    summary.add(_segment(0, 0, 1000, [("sensevoice", "FEARFUL", {"FEARFUL": 1.0})]))
    proto = summary.to_proto(1000)
    assert [(d.label, d.display_name) for d in proto.emotion_distribution] == [("fearful", "恐惧")]
