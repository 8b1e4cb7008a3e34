"""SenseVoice's inline tags, parsed into typed fields, with Chinese display names.

SenseVoiceSmall writes its side information as special tokens in front of the
text: ``<|zh|><|HAPPY|><|Speech|><|withitn|>今天天气很好。`` carries the
language, the emotion, the audio event and whether inverse text
normalisation was applied. A decode of merged audio may hold several such
groups. :func:`parse_sensevoice` returns the clean text (never a tag left in
it) and the fields of the first group, each as a code plus a display name.

FunASR's ``rich_transcription_postprocess`` does a similar job but turns the
tags into emoji inside the text; clients here want typed fields.

Usage::

    parsed = parse_sensevoice("<|en|><|NEUTRAL|><|BGM|><|woitn|>hello")
    parsed.text, parsed.language.code, parsed.language.display_name  # "hello", "en", "英文"
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from services.common.emotion_labels import DISPLAY_NAMES, SENSEVOICE_TO_LABEL

__all__ = [
    "Labelled",
    "SenseVoiceResult",
    "LANGUAGES",
    "EMOTIONS",
    "EVENTS",
    "REQUEST_LANGUAGES",
    "UNKNOWN",
    "language_label",
    "emotion_label",
    "event_label",
    "parse_sensevoice",
    "strip_tags",
]

UNKNOWN = "unknown"
_UNKNOWN_DISPLAY = "未知"

#: Language codes SenseVoice emits and their display names.
LANGUAGES: dict[str, str] = {
    "zh": "中文",
    "en": "英文",
    "yue": "粤语",
    "ja": "日语",
    "ko": "韩语",
    "nospeech": "无语音",
}

#: Languages a request may ask for (``auto`` lets the model detect it).
REQUEST_LANGUAGES: tuple[str, ...] = ("auto", "zh", "en", "yue", "ja", "ko")

#: Emotion codes (as in the tags, upper case) and their display names (the shared
#: ones of services/common/emotion_labels.py: the tags are the emotion2vec+ classes).
EMOTIONS: dict[str, str] = {tag: DISPLAY_NAMES[label] for tag, label in SENSEVOICE_TO_LABEL.items()}

#: Audio event codes (as in the tags) and their display names.
EVENTS: dict[str, str] = {
    "Speech": "语音",
    "BGM": "背景音乐",
    "Laughter": "笑声",
    "Applause": "掌声",
    "Cry": "哭声",
    "Cough": "咳嗽",
    "Sneeze": "喷嚏",
    "Breath": "呼吸",
    "Sing": "唱歌",
    "Speech_Noise": "语音噪声",
    UNKNOWN: _UNKNOWN_DISPLAY,
}

# Tags meaning "no label" in the model's vocabulary.
_EMOTION_UNKNOWN_TAGS = frozenset({"EMO_UNKNOWN", "EMO_UNK", "unk"})
_EVENT_UNKNOWN_TAGS = frozenset({"Event_UNK", "GBG"})
_ITN_TAGS = {"withitn": True, "woitn": False}

_TAG = re.compile(r"<\|([^|<>]*)\|>")
_SPACES = re.compile(r"\s+")
# A space between two CJK characters is a decoding artefact, not a word break.
_CJK_GAP = re.compile(r"(?<=[\u3000-\u9fff\uff00-\uffef])\s+(?=[\u3000-\u9fff\uff00-\uffef])")


@dataclass(frozen=True)
class Labelled:
    """A code and its display name, e.g. ``Labelled("HAPPY", "开心")``."""

    code: str
    display_name: str


@dataclass(frozen=True)
class SenseVoiceResult:
    """Clean text plus the tag fields; a field is None when its tag was absent."""

    text: str
    language: Labelled | None
    emotion: Labelled | None
    event: Labelled | None
    itn: bool | None
    unknown_tags: tuple[str, ...] = ()
    """Tags the parser did not recognise (removed from the text all the same)."""


def language_label(code: str) -> Labelled:
    code = code.strip()
    return Labelled(code, LANGUAGES.get(code, _UNKNOWN_DISPLAY))


def emotion_label(code: str) -> Labelled:
    code = code.strip()
    if code in _EMOTION_UNKNOWN_TAGS:
        code = UNKNOWN
    upper = code.upper()
    if upper in EMOTIONS:
        return Labelled(upper, EMOTIONS[upper])
    return Labelled(UNKNOWN, _UNKNOWN_DISPLAY) if code == UNKNOWN else Labelled(code, _UNKNOWN_DISPLAY)


def event_label(code: str) -> Labelled:
    code = code.strip()
    if code in _EVENT_UNKNOWN_TAGS:
        code = UNKNOWN
    return Labelled(code, EVENTS.get(code, _UNKNOWN_DISPLAY))


def strip_tags(text: str) -> str:
    """``text`` without any ``<|...|>`` tag, with whitespace tidied."""
    text = _TAG.sub(" ", text).replace("\u2581", " ")  # "▁" is sentencepiece's word mark
    text = _CJK_GAP.sub("", text)
    return _SPACES.sub(" ", text).strip()


def _classify(tag: str) -> str | None:
    if tag in LANGUAGES:
        return "language"
    if tag.upper() in EMOTIONS or tag in _EMOTION_UNKNOWN_TAGS:
        return "emotion"
    if tag in EVENTS or tag in _EVENT_UNKNOWN_TAGS:
        return "event"
    if tag in _ITN_TAGS:
        return "itn"
    return None


def parse_sensevoice(raw: str) -> SenseVoiceResult:
    """Split SenseVoice output into clean text and typed tag fields.

    The first tag of each kind wins (a merged decode repeats the group per
    piece). Unrecognised tags are reported in ``unknown_tags`` and removed.
    """
    found: dict[str, str] = {}
    unknown: list[str] = []
    for match in _TAG.finditer(raw):
        tag = match.group(1)
        kind = _classify(tag)
        if kind is None:
            unknown.append(tag)
        else:
            found.setdefault(kind, tag)
    return SenseVoiceResult(
        text=strip_tags(raw),
        language=language_label(found["language"]) if "language" in found else None,
        emotion=emotion_label(found["emotion"]) if "emotion" in found else None,
        event=event_label(found["event"]) if "event" in found else None,
        itn=_ITN_TAGS[found["itn"]] if "itn" in found else None,
        unknown_tags=tuple(unknown),
    )
