"""Speaker clustering (gateway/speakers.py) on synthetic embeddings of known speakers.

Random-weight CAM++ embeddings carry no identity, so the clustering itself is
tested here with embeddings drawn around known speaker centres (192 values,
like CAM++): each speaker's segments have a cosine similarity of about 0.7 to
one another (as real same-speaker segments do, roughly), different speakers
about 0.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from speech_analysis.v1 import gateway_pb2
from services.common.errors import InvalidInput
from gateway.speakers import (DEFAULT_MAX_SPEAKERS, DEFAULT_SIMILARITY_THRESHOLD, MAX_SPEAKERS, SpeakerClusterer,
                              SpeakerOptions)

DIM = 192


def unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


def centres(rng: np.random.Generator, count: int) -> list[np.ndarray]:
    return [unit(rng.standard_normal(DIM)) for _ in range(count)]


def segment(rng: np.random.Generator, centre: np.ndarray, noise: float = 0.65) -> np.ndarray:
    """An embedding near ``centre``: noise 0.65 gives a cosine of ~0.84 to the centre."""
    return unit(centre + noise * unit(rng.standard_normal(DIM)))


def same_partition(labels: list[int], truth: list[int]) -> bool:
    """Whether ``labels`` group the segments exactly as ``truth`` does (names aside)."""
    return len(set(zip(labels, truth))) == len(set(labels)) == len(set(truth))


def test_labels_follow_known_speakers_in_order_of_first_appearance():
    rng = np.random.default_rng(1)
    voices = centres(rng, 3)
    truth = [0, 1, 0, 2, 1, 1, 0, 2, 2, 0] * 5
    speakers = SpeakerClusterer()
    labels = [speakers.assign(segment(rng, voices[t]), 2500) for t in truth]
    assert same_partition(labels, truth)
    assert labels[:4] == [1, 2, 1, 3]  # numbered by first appearance
    assert speakers.speaker_count == 3


def drift_labels(rng: np.random.Generator, speakers: SpeakerClusterer, final_cosine: float,
                 other: np.ndarray | None = None) -> tuple[list[int], list[int]]:
    """Labels of a voice moving in 120 steps of 3 s from a centre to one at ``final_cosine``
    (and of a steady ``other`` voice speaking every third step)."""
    start = centres(rng, 1)[0]
    away = unit(rng.standard_normal(DIM))
    away = unit(away - start * (start @ away))  # orthogonal to start
    angle = math.acos(final_cosine)
    drifting, steady = [], []
    for step in range(120):
        turned = angle * step / 119
        centre = math.cos(turned) * start + math.sin(turned) * away
        drifting.append(speakers.assign(segment(rng, centre, noise=0.4), 3000))
        if other is not None and step % 3 == 0:
            steady.append(speakers.assign(segment(rng, other, noise=0.4), 3000))
    return drifting, steady


def test_a_slowly_drifting_voice_keeps_its_label():
    """The voice ends at cos 0.2 to where it began, far below the threshold: each step is
    small, so the centroid follows and the label stays."""
    rng = np.random.default_rng(2)
    drifting, steady = drift_labels(rng, SpeakerClusterer(), 0.2, other=centres(rng, 1)[0])
    assert set(drifting) == {1}
    assert set(steady) == {2}


def test_the_centroid_memory_is_what_follows_the_drift():
    """A drift to the opposite side (cos -0.5): the capped centroid follows it; a centroid
    that remembers everything (memory of ~11 days) stays behind and the voice splits."""
    follows, _ = drift_labels(np.random.default_rng(3), SpeakerClusterer(), -0.5)
    assert set(follows) == {1}
    frozen, _ = drift_labels(np.random.default_rng(3),
                             SpeakerClusterer(SpeakerOptions(centroid_memory_ms=10 ** 9)), -0.5)
    assert len(set(frozen)) > 1


def test_short_segments_never_start_a_speaker():
    rng = np.random.default_rng(3)
    a, b = centres(rng, 2)
    speakers = SpeakerClusterer()
    assert speakers.assign(segment(rng, a), 400) == 0  # too short to found the first speaker
    assert speakers.assign(segment(rng, a), 3000) == 1
    assert speakers.assign(segment(rng, b), 3000) == 2
    # Short and like a known speaker: joins it.
    assert [speakers.assign(segment(rng, b), 400) for _ in range(5)] == [2] * 5
    # Short and like no one (cosine ~0.45 to A, ~0 to B): unknown, and no speaker is opened.
    assert {speakers.assign(segment(rng, a, noise=2.0), 400) for _ in range(20)} == {0}
    assert speakers.speaker_count == 2
    # The same kind of audio long enough does start a new speaker.
    assert speakers.assign(segment(rng, centres(rng, 1)[0]), 1500) == 3


def test_max_speakers_caps_the_labels():
    rng = np.random.default_rng(5)
    voices = centres(rng, 6)
    speakers = SpeakerClusterer(SpeakerOptions(max_speakers=3))
    labels = [speakers.assign(segment(rng, voices[i % 6]), 2000) for i in range(60)]
    assert set(labels) == {1, 2, 3}
    assert speakers.speaker_count == 3


def test_the_threshold_decides_between_joining_and_a_new_speaker():
    rng = np.random.default_rng(6)
    voice = centres(rng, 1)[0]
    loose = SpeakerClusterer(SpeakerOptions(similarity_threshold=0.3))
    strict = SpeakerClusterer(SpeakerOptions(similarity_threshold=0.95))
    embeddings = [segment(rng, voice) for _ in range(10)]  # pairwise cosine ~0.7
    assert {loose.assign(e, 2000) for e in embeddings} == {1}
    assert len({strict.assign(e, 2000) for e in embeddings}) > 1


def test_state_stays_bounded_over_a_long_stream():
    rng = np.random.default_rng(7)
    speakers = SpeakerClusterer(SpeakerOptions(max_speakers=4))
    for _ in range(3000):  # every segment a stranger: the worst case for state
        speakers.assign(unit(rng.standard_normal(DIM)), 2000)
    assert speakers.speaker_count == 4
    assert speakers._centroids.shape == (4, DIM)


def test_bad_embeddings_are_refused():
    speakers = SpeakerClusterer()
    with pytest.raises(ValueError):
        speakers.assign(np.zeros(DIM), 2000)
    with pytest.raises(ValueError):
        speakers.assign(np.full(DIM, np.nan), 2000)
    speakers.assign(np.ones(DIM), 2000)
    with pytest.raises(ValueError):
        speakers.assign(np.ones(DIM + 1), 2000)


def test_options_from_the_request():
    assert SpeakerOptions.from_config(gateway_pb2.SpeakerLabelConfig(enabled=True)) == SpeakerOptions(
        similarity_threshold=DEFAULT_SIMILARITY_THRESHOLD, max_speakers=DEFAULT_MAX_SPEAKERS)
    chosen = SpeakerOptions.from_config(gateway_pb2.SpeakerLabelConfig(similarity_threshold=0.7, max_speakers=2))
    assert (round(chosen.similarity_threshold, 6), chosen.max_speakers) == (0.7, 2)
    for bad in (gateway_pb2.SpeakerLabelConfig(similarity_threshold=1.0),
                gateway_pb2.SpeakerLabelConfig(similarity_threshold=-0.1),
                gateway_pb2.SpeakerLabelConfig(similarity_threshold=float("nan")),
                gateway_pb2.SpeakerLabelConfig(max_speakers=MAX_SPEAKERS + 1)):
        with pytest.raises(InvalidInput, match="config.speaker_labels"):
            SpeakerOptions.from_config(bad)


def test_interleaved_noisy_conversation_of_two():
    """A call-like sequence: two voices taking turns, segments of 0.5-6 s, short ones
    noisier. Every labelled segment has its speaker; only short ones may stay unknown."""
    rng = np.random.default_rng(8)
    voices = centres(rng, 2)
    truth, durations = [], []
    for turn in itertools.islice(itertools.cycle([0, 1]), 80):
        truth.append(turn)
        durations.append(int(rng.uniform(500, 6000)))
    speakers = SpeakerClusterer()
    labels = [speakers.assign(segment(rng, voices[t], noise=0.65 if d >= 1000 else 1.0), d)
              for t, d in zip(truth, durations)]
    labelled = [(label, t) for label, t in zip(labels, truth) if label]
    assert same_partition([label for label, _ in labelled], [t for _, t in labelled])
    assert set(labels) - {0} == {1, 2}
    assert all(d < 1000 for label, d in zip(labels, durations) if label == 0)
    assert len(labelled) >= 76  # a first short word of each voice at most (60 seeds: <= 2)
