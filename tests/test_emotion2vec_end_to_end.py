"""The product path with an emotion2vec+ emotion worker behind the gateway (issue #19).

Real processes and tiny random-weight models: the VAD and ASR workers of the
shared ``stack`` fixture, plus an emotion worker started with
``EMOTION_MODEL=emotion2vec`` and a gateway in front of the three. Random
weights: structure, plumbing and the nine-class vocabulary are checked, never
accuracy.
"""

from __future__ import annotations

import grpc
import pytest

from speech_analysis_client import analyze
from speech_analysis.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc
from services.common.emotion_labels import DISPLAY_NAMES, EMOTION2VEC_LABELS
from tests.audio_helpers import truth_segments_ms
from tests.conftest import read_clip
from tests.procs import start_server


@pytest.fixture(scope="module")
def e2v_gateway(stack, model_env, tmp_path_factory):
    """A gateway whose emotion worker serves emotion2vec+ (PROJECT_ROOT without the SpeechBrain model)."""
    root = tmp_path_factory.mktemp("e2v-e2e-root")
    emotion = start_server("services.emotion.server", "e2e-e2v-emotion", env={
        "MODEL_CACHE_DIR": model_env["MODEL_CACHE_DIR"], "PROJECT_ROOT": str(root), "EMOTION_MODEL": "emotion2vec"})
    gateway = start_server("gateway.server", "e2e-e2v-gateway", env={
        "VAD_ADDRESS": stack.vad.address, "ASR_ADDRESS": stack.asr.address, "EMOTION_ADDRESS": emotion.address,
        "WORKER_TIMEOUT_S": "30"})
    yield gateway
    gateway.stop()
    emotion.stop()


def run(address, clip, config=None):
    samples, rate = read_clip(clip, dtype="int16")
    with grpc.insecure_channel(address) as channel:
        return list(analyze(gateway_pb2_grpc.SpeechAnalysisServiceStub(channel), samples, rate, config, timeout=180))


def results_of(events):
    return [e.segment_result for e in events if e.WhichOneof("event") == "segment_result"]


def test_paraformer_mode_with_nine_emotions(e2v_gateway, manifest):
    events = run(e2v_gateway.address, "zh_weather", gateway_pb2.StreamConfig(mode=common_pb2.ASR_MODE_PARAFORMER))
    results = results_of(events)
    assert len(results) == len(truth_segments_ms(manifest["zh_weather"]))
    for result in results:
        assert not result.errors, result.errors
        assert result.text
        (emotion,) = result.emotions
        assert emotion.source == "emotion2vec"
        assert emotion.label in EMOTION2VEC_LABELS and emotion.display_name == DISPLAY_NAMES[emotion.label]
        assert [p.label for p in emotion.probabilities] == list(EMOTION2VEC_LABELS)
        assert abs(sum(p.probability for p in emotion.probabilities) - 1) < 1e-4
        assert result.random_weights
    summary = events[-1].summary
    assert events[-1].WhichOneof("event") == "summary"
    assert summary.dominant_emotion in EMOTION2VEC_LABELS
    assert summary.dominant_emotion_display_name == DISPLAY_NAMES[summary.dominant_emotion]
    # every class that got probability is in the distribution, with its display name
    assert {d.label for d in summary.emotion_distribution} <= set(EMOTION2VEC_LABELS)
    assert len(summary.emotion_distribution) > 4
    assert all(d.display_name == DISPLAY_NAMES[d.label] for d in summary.emotion_distribution)
    assert abs(sum(d.share for d in summary.emotion_distribution) - 1) < 1e-4
    assert sum(d.duration_ms for d in summary.emotion_distribution) == summary.speech_duration_ms


def test_sensevoice_mode_adds_emotion2vec_on_request(e2v_gateway):
    sensevoice = gateway_pb2.StreamConfig(mode=common_pb2.ASR_MODE_SENSEVOICE)
    plain = results_of(run(e2v_gateway.address, "zh_single", sensevoice))
    assert [[e.source for e in r.emotions] for r in plain] == [["sensevoice"]] * len(plain)
    events = run(e2v_gateway.address, "zh_single",
                 gateway_pb2.StreamConfig(mode=common_pb2.ASR_MODE_SENSEVOICE, speechbrain_emotion=True))
    (result,) = results_of(events)
    assert sorted(e.source for e in result.emotions) == ["emotion2vec", "sensevoice"]
    (worker,) = [e for e in result.emotions if e.source == "emotion2vec"]
    # the summary counts the worker's nine-class answer, not SenseVoice's tag
    summary = events[-1].summary
    assert {d.label: d.duration_ms for d in summary.emotion_distribution}[worker.label] == summary.speech_duration_ms
    means = {d.label: d.mean_probability for d in summary.emotion_distribution}
    assert means == pytest.approx({p.label: p.probability for p in worker.probabilities}, abs=1e-4)
    assert {d.label: d.share for d in summary.emotion_distribution if d.share} == {worker.label: 1.0}
    assert summary.dominant_emotion == worker.label
