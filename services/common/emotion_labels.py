"""Emotion labels of every model the services know, and their Chinese display names.

The one home for display names: the emotion worker (both models), the
SenseVoice tag parser and the gateway's session summary all read
:data:`DISPLAY_NAMES`, so one emotion is shown the same way whichever model
produced it.

Two vocabularies are served:

* SpeechBrain ``emotion-recognition-wav2vec2-IEMOCAP``: the four IEMOCAP codes
  ``neu``, ``ang``, ``hap``, ``sad``;
* emotion2vec+ (``iic/emotion2vec_plus_base``): nine classes, written in the
  model's ``tokens.txt`` as ``中文/english`` (``生气/angry``) plus ``<unk>``;
  the worker reports the English part (:func:`emotion2vec_label`), i.e.
  :data:`EMOTION2VEC_LABELS`.

SenseVoice's emotion tags (``<|HAPPY|>``) are the emotion2vec+ classes in upper
case (SenseVoice's emotion head was trained on emotion2vec+ labels):
:data:`SENSEVOICE_TO_LABEL` maps them onto the nine labels and
:func:`sensevoice_label` onto the vocabulary a session's emotion worker uses,
so a session summary never counts "neu" and "neutral" as two emotions.

The module imports nothing heavy; the gateway imports it.
"""

from __future__ import annotations

__all__ = [
    "IEMOCAP_LABELS",
    "EMOTION2VEC_LABELS",
    "UNKNOWN_LABEL",
    "DISPLAY_NAMES",
    "SENSEVOICE_TO_LABEL",
    "IEMOCAP_OF",
    "display_name",
    "emotion2vec_label",
    "emotion_source",
    "sensevoice_label",
]

#: SpeechBrain IEMOCAP classes, in the release's label order.
IEMOCAP_LABELS: tuple[str, ...] = ("neu", "ang", "hap", "sad")

UNKNOWN_LABEL = "unknown"

#: emotion2vec+ classes, in the release's label order (tokens.txt line order).
EMOTION2VEC_LABELS: tuple[str, ...] = (
    "angry", "disgusted", "fearful", "happy", "neutral", "other", "sad", "surprised", UNKNOWN_LABEL)

#: Display name of every label code. Both vocabularies share names for the same
#: emotion (``neu`` and ``neutral`` are both 中性); the real emotion2vec+ release
#: writes some differently in tokens.txt (中立, 难过, 吃惊), and those are not used,
#: so a 9-class and a 4-class deployment show the same word for the same emotion.
DISPLAY_NAMES: dict[str, str] = {
    # SpeechBrain IEMOCAP
    "neu": "中性",
    "ang": "生气",
    "hap": "开心",
    "sad": "悲伤",
    # emotion2vec+ (and SenseVoice's tags, lower-cased)
    "angry": "生气",
    "disgusted": "厌恶",
    "fearful": "恐惧",
    "happy": "开心",
    "neutral": "中性",
    "other": "其他",
    "surprised": "惊讶",
    UNKNOWN_LABEL: "未知",
}

#: SenseVoice emotion tags -> emotion2vec+ labels.
SENSEVOICE_TO_LABEL: dict[str, str] = {
    "HAPPY": "happy",
    "SAD": "sad",
    "ANGRY": "angry",
    "NEUTRAL": "neutral",
    "FEARFUL": "fearful",
    "DISGUSTED": "disgusted",
    "SURPRISED": "surprised",
    UNKNOWN_LABEL: UNKNOWN_LABEL,
}

#: emotion2vec+ labels that have an IEMOCAP class of the same meaning.
IEMOCAP_OF: dict[str, str] = {"neutral": "neu", "angry": "ang", "happy": "hap", "sad": "sad"}


def display_name(label: str, fallback: str | None = None) -> str:
    """Chinese display name of ``label``; ``fallback`` (or the label itself) when unknown."""
    return DISPLAY_NAMES.get(label, fallback if fallback is not None else label)


def emotion2vec_label(token: str) -> str:
    """The label of one emotion2vec+ ``tokens.txt`` entry: ``生气/angry`` -> ``angry``,
    ``<unk>`` -> ``unknown``; an entry without ``/`` is kept as it is."""
    token = token.strip()
    if token in ("<unk>", "unk", "<UNK>"):
        return UNKNOWN_LABEL
    return token.rsplit("/", 1)[-1].strip() if "/" in token else token


def sensevoice_label(tag: str, iemocap: bool = False) -> str:
    """The label a SenseVoice emotion tag counts as.

    ``iemocap``: the session's emotion worker speaks IEMOCAP codes, so the four
    tags with an IEMOCAP counterpart become that code (``NEUTRAL`` -> ``neu``)
    and the others their emotion2vec+ label (``FEARFUL`` -> ``fearful``).
    A tag this table does not know is returned as it is.
    """
    label = SENSEVOICE_TO_LABEL.get(tag, tag)
    if iemocap:
        return IEMOCAP_OF.get(label, label)
    return label


def emotion_source(model_names) -> str:
    """``EmotionResult.source`` for a reply of the emotion worker serving ``model_names``
    (its ``model_info.models``): ``"emotion2vec"`` for emotion2vec+, else ``"speechbrain"``."""
    return "emotion2vec" if any(name.startswith("emotion2vec") for name in model_names) else "speechbrain"
