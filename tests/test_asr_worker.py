"""The ASR worker through real gRPC, with tiny random-weight models.

Two worker processes: one serving both modes (with a short 8 s split cap, so
the 18.8 s clip must be split by FSMN-VAD), and one serving paraformer only
with a queue of one (wrong-mode and overload refusals). Transcript *content*
is meaningless with random weights; the tests check fields, timestamps,
refusals and that options reach the model.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import grpc
import numpy as np
import pytest

from speech_analysis.v1 import common_pb2
from speech_analysis.worker.v1 import asr_pb2, asr_pb2_grpc, audio_pb2
from tests.conftest import read_clip
from tests.procs import ROOT, free_port, sample, scrape, serving, start_server

PUNCTUATION = set("，。？、,.?!！")
# Tiny models gain nothing from two threads, and two OpenMP threads on a busy
# two-core test host can stall each other for seconds per call.
ONE_THREAD = {"TORCH_THREADS": "1"}


def start_asr(name: str, env: dict[str, str]):
    """An ASR worker with its metrics on ``server.metrics_port``."""
    metrics_port = free_port()
    server = start_server("services.asr.server", name, env={**env, "METRICS_PORT": str(metrics_port)})
    server.metrics_port = metrics_port
    return server


@pytest.fixture(scope="module")
def both_worker(model_env):
    server = start_asr("asr-both", {**model_env, **ONE_THREAD, "ASR_MODE": "both", "ASR_MAX_SEGMENT_S": "8",
                                    "ASR_SENSEVOICE_TIMESTAMPS": "1"})
    yield server
    server.stop()


@pytest.fixture(scope="module")
def paraformer_worker(queue1_asr):
    """Paraformer only, with a queue of one (tests/conftest.py, shared with other modules)."""
    return serving(queue1_asr)


def transcribe(address: str, samples: np.ndarray, timeout: float = 60, **fields) -> asr_pb2.TranscribeResponse:
    request = asr_pb2.TranscribeRequest(
        audio=audio_pb2.AudioChunk(samples_f32le=samples.astype("<f4").tobytes()), **fields)
    with grpc.insecure_channel(address) as channel:
        return asr_pb2_grpc.AsrServiceStub(channel).Transcribe(request, timeout=timeout)


def refused(address: str, samples: np.ndarray, **fields) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        transcribe(address, samples, **fields)
    return info.value


def first_sentence() -> np.ndarray:
    audio, _ = read_clip("zh_weather")
    return audio[8000:102990]


def test_paraformer_text_timestamps_and_model_info(both_worker):
    segment = first_sentence()
    response = transcribe(both_worker.address, segment, mode=common_pb2.ASR_MODE_PARAFORMER, segment_start_ms=500)
    assert response.mode == common_pb2.ASR_MODE_PARAFORMER
    assert response.text and set(response.text) & PUNCTUATION, response.text
    assert response.model_info.random_weights
    assert any("seaco_paraformer" in name for name in response.model_info.models)
    assert response.compute_ms > 0
    duration_ms = segment.size * 1000 // 16000
    stamps = response.timestamps
    assert stamps and [t.start_ms for t in stamps] == sorted(t.start_ms for t in stamps)
    for stamp in stamps:
        assert stamp.token and 0 <= stamp.start_ms <= stamp.end_ms <= duration_ms
        assert (stamp.stream_start_ms, stamp.stream_end_ms) == (stamp.start_ms + 500, stamp.end_ms + 500)
    assert not (response.language or response.audio_event or response.emotion.label)


def test_unspecified_mode_is_the_first_served_mode(both_worker):
    response = transcribe(both_worker.address, first_sentence())
    assert response.mode == common_pb2.ASR_MODE_PARAFORMER


def test_hotwords_accepted_and_url_hotwords_refused(both_worker):
    response = transcribe(both_worker.address, first_sentence(), mode=common_pb2.ASR_MODE_PARAFORMER,
                          hotwords=["天气", "公园"])
    assert response.text
    error = refused(both_worker.address, first_sentence(), mode=common_pb2.ASR_MODE_PARAFORMER,
                    hotwords=["http://example.com/hotwords"])
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "hotword" in error.details()


def test_long_segment_is_split_and_timestamps_pass_the_cap(both_worker):
    audio, _ = read_clip("zh_weather")  # 18.8 s > the 8 s cap
    response = transcribe(both_worker.address, audio, mode=common_pb2.ASR_MODE_PARAFORMER, segment_start_ms=1000)
    stamps = response.timestamps
    assert stamps[-1].end_ms > 8000
    assert stamps[-1].end_ms <= audio.size * 1000 // 16000
    assert [t.start_ms for t in stamps] == sorted(t.start_ms for t in stamps)
    assert all(t.stream_start_ms == t.start_ms + 1000 for t in stamps)


def test_sensevoice_tags_are_fields_never_text(both_worker):
    audio, _ = read_clip("zh_single")
    response = transcribe(both_worker.address, audio, mode=common_pb2.ASR_MODE_SENSEVOICE, language="auto")
    assert response.mode == common_pb2.ASR_MODE_SENSEVOICE
    assert response.text and "<|" not in response.text and "|>" not in response.text
    assert (response.language, response.language_display_name) == ("zh", "中文")
    assert (response.emotion.label, response.emotion.display_name) == ("HAPPY", "开心")
    assert response.emotion.probability == 1.0
    assert (response.audio_event, response.audio_event_display_name) == ("Speech", "语音")
    assert response.model_info.random_weights
    assert response.model_info.models == ["FunAudioLLM/SenseVoiceSmall"]
    duration_ms = audio.size * 1000 // 16000  # ASR_SENSEVOICE_TIMESTAMPS=1 on this worker
    stamps = response.timestamps
    assert stamps and [t.start_ms for t in stamps] == sorted(t.start_ms for t in stamps)
    assert all(0 <= t.start_ms <= t.end_ms <= duration_ms and t.token for t in stamps)


def test_sensevoice_itn_and_language_reach_the_model(both_worker):
    audio, _ = read_clip("zh_single")
    plain = transcribe(both_worker.address, audio, mode=common_pb2.ASR_MODE_SENSEVOICE, use_itn=False)
    itn = transcribe(both_worker.address, audio, mode=common_pb2.ASR_MODE_SENSEVOICE, use_itn=True)
    english = transcribe(both_worker.address, audio, mode=common_pb2.ASR_MODE_SENSEVOICE, language="en")
    assert plain.text != itn.text  # the fixture adds "。" only when asked for ITN
    assert itn.text.endswith("。") and not plain.text.endswith("。")
    assert (english.language, english.language_display_name) == ("en", "英文")
    error = refused(both_worker.address, audio, mode=common_pb2.ASR_MODE_SENSEVOICE, language="klingon")
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("mode", [common_pb2.ASR_MODE_PARAFORMER, common_pb2.ASR_MODE_SENSEVOICE])
def test_empty_is_invalid_silent_and_tiny_are_empty_answers(both_worker, mode):
    error = refused(both_worker.address, np.zeros(0, np.float32), mode=mode)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    for samples in (np.zeros(16000, np.float32), np.full(10, 0.2, np.float32)):
        response = transcribe(both_worker.address, samples, mode=mode)
        assert response.text == "" and not response.timestamps
        assert response.model_info.random_weights


def test_malformed_audio_is_invalid(both_worker):
    with grpc.insecure_channel(both_worker.address) as channel:
        with pytest.raises(grpc.RpcError) as info:
            asr_pb2_grpc.AsrServiceStub(channel).Transcribe(asr_pb2.TranscribeRequest(
                audio=audio_pb2.AudioChunk(samples_f32le=b"\0" * 6)), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_concurrent_requests_all_answered(both_worker):
    audio, _ = read_clip("zh_weather")
    pieces = [audio[i * 40000:(i + 1) * 40000] for i in range(6)]
    results: dict[int, asr_pb2.TranscribeResponse] = {}

    def run(i):
        mode = common_pb2.ASR_MODE_PARAFORMER if i % 2 else common_pb2.ASR_MODE_SENSEVOICE
        results[i] = transcribe(both_worker.address, pieces[i], mode=mode, segment_start_ms=i * 2500)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(pieces))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(results) == list(range(len(pieces)))
    for i, response in results.items():
        assert response.text
        assert all(t.stream_start_ms == t.start_ms + i * 2500 for t in response.timestamps)


def test_wrong_mode_is_failed_precondition_naming_served_mode(paraformer_worker):
    error = refused(paraformer_worker.address, first_sentence(), mode=common_pb2.ASR_MODE_SENSEVOICE)
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "paraformer" in error.details()


def metric(worker, name: str, **labels: str) -> float:
    """The worker's Prometheus samples of ``name`` with ``labels``, summed (0 when absent)."""
    return sample(scrape(worker.metrics_port), name, **labels)


def model_calls(worker) -> int:
    """Model calls the worker's batcher has made."""
    return int(metric(worker, "speech_model_call_seconds_count", service="asr"))


def test_overload_is_resource_exhausted_and_refusals_cost_no_model_call(paraformer_worker):
    audio, _ = read_clip("zh_weather")
    before = model_calls(paraformer_worker)
    codes: list[grpc.StatusCode] = []
    lock = threading.Lock()

    def run(i):
        try:
            transcribe(paraformer_worker.address, audio, mode=common_pb2.ASR_MODE_PARAFORMER, segment_start_ms=i)
            code = grpc.StatusCode.OK
        except grpc.RpcError as exc:
            code = exc.code()
        with lock:
            codes.append(code)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes and grpc.StatusCode.OK in codes
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert model_calls(paraformer_worker) - before == codes.count(grpc.StatusCode.OK)


def test_request_expiring_in_the_queue_never_reaches_the_model(both_worker):
    audio, _ = read_clip("zh_weather")
    long_audio = np.concatenate([audio] * 6)  # 113 s, just under the 8 MB message limit
    before = model_calls(both_worker)
    # Different hotwords cannot share a model call: six calls keep the model busy for a while
    # on any machine (each one is 15 pieces of 8 s for the one-thread worker).
    words = ("天气", "公园", "散步", "回家", "休息", "消息")
    outcomes: list[object] = []

    def busy_call(word: str) -> None:
        try:
            outcomes.append(transcribe(both_worker.address, long_audio, timeout=120,
                                       mode=common_pb2.ASR_MODE_PARAFORMER, hotwords=[word]))
        except grpc.RpcError as exc:
            outcomes.append(exc.code())

    busy = [threading.Thread(target=busy_call, args=(word,)) for word in words]
    for thread in busy:
        thread.start()
    deadline = time.monotonic() + 60
    while metric(both_worker, "speech_queue_depth", service="asr") < 1:  # model busy, backlog queued
        assert time.monotonic() < deadline and len(outcomes) < len(words), (
            f"the busy requests never queued up: {outcomes}")
        time.sleep(0.005)
    expired = refused(both_worker.address, audio, mode=common_pb2.ASR_MODE_PARAFORMER, timeout=0.3)
    for thread in busy:
        thread.join(120)
    assert expired.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert all(isinstance(o, asr_pb2.TranscribeResponse) for o in outcomes), outcomes
    assert model_calls(both_worker) - before == len(words)


@pytest.mark.parametrize("mode, flag", [("paraformer", "--paraformer"), ("sensevoice", "--sensevoice")])
def test_missing_models_exit_fast_naming_path_and_fetch_command(tmp_path, mode, flag):
    env = {**os.environ, "MODEL_CACHE_DIR": str(tmp_path / "empty-cache"), "ASR_MODE": mode,
           "PROJECT_ROOT": str(tmp_path)}
    started, started_cpu = time.monotonic(), children_cpu_s()
    proc = subprocess.run([sys.executable, "-m", "services.asr.server", "--port", "0"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - started
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    # Fast: no wait (wall clock, with room for a loaded host, as the emotion worker's) and no
    # model work (its CPU time, which a busy host does not inflate; ~4 s for the imports).
    cpu_s = children_cpu_s() - started_cpu
    assert elapsed < 30 and cpu_s < 15, (elapsed, cpu_s)
    assert str(tmp_path / "empty-cache") in output
    assert f"python scripts/download_models.py {flag}" in output


def children_cpu_s() -> float:
    """CPU seconds of this process's finished children (each counted once it is waited for)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def test_int8_worker_answers_each_request_with_its_own_model_call(model_env, paraformer_worker):
    """ASR_INT8: dynamic quantization picks one activation scale per model call, so the worker
    never batches (a request's transcript must not depend on what else was in flight)."""
    server = start_asr("asr-int8", {**model_env, **ONE_THREAD, "ASR_MODE": "paraformer", "ASR_INT8": "1"})
    try:
        audio, _ = read_clip("zh_weather")
        pieces = [audio[i * 40000:(i + 1) * 40000] for i in range(4)]
        alone = [transcribe(server.address, piece).text for piece in pieces]
        together: dict[int, str] = {}

        def run(i):
            together[i] = transcribe(server.address, pieces[i]).text

        before = model_calls(server)
        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(pieces))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert [together[i] for i in range(len(pieces))] == alone
        assert all(alone) and any(set(text) & set("，。？、") for text in alone)
        assert model_calls(server) - before == len(pieces)
        # ASR_INT8 reached the model: on random weights, int8 changes some transcripts of the fp32 one
        fp32 = [transcribe(paraformer_worker.address, piece).text for piece in pieces]
        assert alone != fp32, alone
    finally:
        server.stop()
