"""The hostile-client tests that need the whole stack (ASR and emotion workers behind the
gateway). The others, against a VAD-only gateway, are in test_hostile_clients.py: kept
apart so that they run outside the stack's scheduling unit (tests/conftest.py)."""

from __future__ import annotations

import io
import threading

import grpc
import numpy as np
import soundfile as sf

from speech_analysis_client import analyze
from speech_analysis.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc
from speech_analysis.worker.v1 import asr_pb2, asr_pb2_grpc, audio_pb2
from services.common.limits import MAX_HOTWORDS
from tests.conftest import read_clip
from tests.procs import serving, start_server
from tests.test_hostile_clients import config, kinds, refusal, stub_for


def test_huge_hotword_lists_are_refused_at_once_without_harming_other_streams(stack):
    """100 000 hotwords: the gateway refuses them at config time, the ASR worker (called
    directly) in O(1), and a concurrent stream keeps all its transcripts."""
    hotwords = [f"词{i}" for i in range(100_000)]
    done = {}

    def concurrent_stream():
        clip, rate = read_clip("zh_weather", dtype="int16")
        with grpc.insecure_channel(stack.gateway.address) as channel:
            done["events"] = list(analyze(gateway_pb2_grpc.SpeechAnalysisServiceStub(channel), clip, rate,
                                          chunk_ms=100, timeout=120))

    other = threading.Thread(target=concurrent_stream)
    other.start()
    try:
        channel, stub = stub_for(stack.gateway.address)
        with channel:
            for _ in range(3):
                error = refusal(lambda: list(stub.Analyze(
                    iter([gateway_pb2.AnalyzeRequest(config=config(hotwords=hotwords))]), timeout=30)))
                assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert f"at most {MAX_HOTWORDS}" in error.details()
        with grpc.insecure_channel(stack.asr.address) as channel:
            asr = asr_pb2_grpc.AsrServiceStub(channel)
            request = asr_pb2.TranscribeRequest(
                audio=audio_pb2.AudioChunk(samples_f32le=np.zeros(16000, "<f4").tobytes()),
                mode=common_pb2.ASR_MODE_PARAFORMER, hotwords=hotwords)
            for _ in range(3):
                error = refusal(lambda: asr.Transcribe(request, timeout=10))
                assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        other.join(120)
    results = kinds(done["events"], "segment_result")
    assert results and all(not r.errors for r in results), results


def test_busy_workers_make_segments_wait_not_fail(stack, queue1_asr, queue1_emotion):
    """Admission beyond worker capacity: ASR and emotion queues of 1 and 8 concurrent fast
    streams (up to 32 segments in flight): refused segments wait and are sent again, so
    every segment gets its transcript and emotion and every stream ends OK."""
    asr, emotion = serving(queue1_asr), serving(queue1_emotion)
    gateway = start_server("gateway.server", "gateway-busy", env={
        "VAD_ADDRESS": stack.vad.address, "ASR_ADDRESS": asr.address, "EMOTION_ADDRESS": emotion.address,
        "MAX_SESSIONS": "32", "WORKER_TIMEOUT_S": "60"})
    try:
        clip, rate = read_clip("en_meeting", dtype="int16")
        content = io.BytesIO()
        sf.write(content, np.concatenate([clip] * 2), rate, format="WAV", subtype="PCM_16")
        responses = [None] * 8

        def upload(i):
            with grpc.insecure_channel(gateway.address) as channel:
                responses[i] = gateway_pb2_grpc.SpeechAnalysisServiceStub(channel).AnalyzeFile(
                    gateway_pb2.AnalyzeFileRequest(content=content.getvalue()), timeout=120)

        threads = [threading.Thread(target=upload, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(150)
        for response in responses:
            results = kinds(response.events, "segment_result")
            assert len(results) == 6
            assert all(not r.errors and r.emotions for r in results), [list(r.errors) for r in results]
    finally:
        gateway.stop()
