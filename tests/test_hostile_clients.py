"""What a hostile or careless client can do to the service, through the real processes.

Each test matches one item of the review that found these (long sessions, bounded
memory and CPU per request, the right status every time). Workers run on the tiny
random-weight models where a test needs them; no test checks transcript content.
"""

from __future__ import annotations

import io
import math
import re
import threading
import time

import grpc
import numpy as np
import pytest
import soundfile as sf

from bench.procstat import memory_mib
from speech_analysis_client import analyze
from speech_analysis.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc
from speech_analysis.worker.v1 import audio_pb2, vad_pb2, vad_pb2_grpc
from tests.conftest import read_clip
from tests.procs import free_port, sample, scrape, start_server, wait_for_metric

# No ASR or emotion worker: overall health stays NOT_SERVING, so these gateways wait on "vad".
SPINE_ENV = {"ASR_ADDRESS": "127.0.0.1:9", "EMOTION_ADDRESS": "127.0.0.1:9", "WORKER_TIMEOUT_S": "5"}


def stub_for(address: str) -> tuple[grpc.Channel, gateway_pb2_grpc.SpeechAnalysisServiceStub]:
    channel = grpc.insecure_channel(address)
    return channel, gateway_pb2_grpc.SpeechAnalysisServiceStub(channel)


def config(**kwargs) -> gateway_pb2.StreamConfig:
    return gateway_pb2.StreamConfig(sample_rate_hz=16000, encoding=common_pb2.AUDIO_ENCODING_PCM16LE, channels=1,
                                    **kwargs)


def kinds(events, kind):
    return [getattr(e, kind) for e in events if e.WhichOneof("event") == kind]


def refusal(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


def flac_of_silence(seconds: int, rate: int, channels: int) -> bytes:
    """A FLAC holding ``seconds`` of digital silence: a few hundred KB for minutes of audio."""
    buffer = io.BytesIO()
    block = np.zeros((rate * 10, channels), dtype=np.int16)
    with sf.SoundFile(buffer, "w", rate, channels, format="FLAC", subtype="PCM_16") as out:
        for _ in range(seconds // 10):
            out.write(block)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def hostile_gateway(vad_worker):
    metrics_port = free_port()
    server = start_server("gateway.server", "gateway-hostile", env={
        **SPINE_ENV, "VAD_ADDRESS": vad_worker.address, "MAX_SESSIONS": "2", "IDLE_TIMEOUT_S": "1.5",
        "MAX_SESSION_S": "600", "MAX_FILE_BYTES": "1000000", "METRICS_PORT": str(metrics_port)},
        serving_service="vad")
    server.metrics_port = metrics_port
    yield server
    server.stop()


# ---- long sessions ----------------------------------------------------------------------------

def test_streams_outlive_connection_recycling(tmp_path):
    """Connections age out after 1 s here (MAX_CONNECTION_AGE_S): a real-time stream of 8 s
    through gateway and VAD must still complete, with every segment and the summary."""
    env = {"MAX_CONNECTION_AGE_S": "1"}
    vad = start_server("services.vad.server", "vad-aging", env=env)
    gateway = start_server("gateway.server", "gateway-aging", env={**SPINE_ENV, **env, "VAD_ADDRESS": vad.address},
                           serving_service="vad")
    try:
        clip, rate = read_clip("en_meeting", dtype="int16")
        audio = clip[: int(8.5 * rate)]
        channel, stub = stub_for(gateway.address)
        with channel:
            events = list(analyze(stub, audio, rate, chunk_ms=100, realtime=True, timeout=60))
            # A new call on the same (client) channel still works after the recycling.
            again = list(analyze(stub, clip[: rate], rate, timeout=30))
        assert events[-1].WhichOneof("event") == "summary"
        assert len(kinds(events, "segment_result")) == len(kinds(events, "speech_ended")) >= 2
        assert again[-1].WhichOneof("event") == "summary"
    finally:
        gateway.stop()
        vad.stop()


def test_idle_streams_end_and_every_open_stream_holds_a_slot(hostile_gateway):
    """MAX_SESSIONS=2, IDLE_TIMEOUT_S=1.5: a stream that never sends its config and one
    that sends only its config both count, then both end with OUT_OF_RANGE and free their slots."""
    channel, stub = stub_for(hostile_gateway.address)
    release = threading.Event()

    def silent(first=None):
        if first is not None:
            yield first
        release.wait(20)

    with channel:
        no_config = stub.Analyze(silent(), timeout=20)
        config_only = stub.Analyze(silent(gateway_pb2.AnalyzeRequest(config=config())), timeout=20)
        # Both hold their slot (taken in the step that counts the RPC active): a third stream
        # is refused for capacity.
        wait_for_metric(hostile_gateway.metrics_port, "speech_active_rpcs", 2, method="Analyze")
        clip, rate = read_clip("zh_single", dtype="int16")
        with pytest.raises(grpc.RpcError) as third:
            list(analyze(stub, clip[:1600], rate, timeout=10))
        assert third.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, third.value
        for call in (no_config, config_only):
            error = refusal(lambda: list(call))  # noqa: B023 (called at once)
            assert error.code() == grpc.StatusCode.OUT_OF_RANGE, error
            assert "IDLE_TIMEOUT_S" in error.details()
        release.set()
        events = list(analyze(stub, clip, rate, timeout=30))  # the slots are free again
        assert events[-1].WhichOneof("event") == "summary"


# ---- bounded memory and CPU per request --------------------------------------------------------

def test_compressed_file_bomb_is_decoded_in_bounded_memory(hostile_gateway):
    """5 minutes of 192 kHz stereo silence in a ~220 KB FLAC (230 MB as float32 decoded whole):
    the gateway's peak resident memory (VmHWM) grows by tens of MB at most."""
    bomb = flac_of_silence(300, 192_000, 2)
    assert len(bomb) < 300_000
    pid = hostile_gateway.proc.pid
    before = memory_mib(pid)["VmHWM"]
    channel, stub = stub_for(hostile_gateway.address)
    with channel:
        response = stub.AnalyzeFile(gateway_pb2.AnalyzeFileRequest(content=bomb), timeout=120)
    summary = response.events[-1].summary
    assert summary.audio_duration_ms == pytest.approx(300_000, abs=50)
    assert memory_mib(pid)["VmHWM"] - before < 60


def test_too_long_files_are_refused_before_decoding_and_leave_nothing_behind(hostile_gateway):
    """A FLAC declaring 11 minutes (MAX_SESSION_S is 600 s here) is refused with INVALID_ARGUMENT
    from its header, four times over, and the gateway's memory does not grow."""
    too_long = flac_of_silence(660, 8000, 1)
    pid = hostile_gateway.proc.pid
    before = memory_mib(pid)
    channel, stub = stub_for(hostile_gateway.address)
    with channel:
        for _ in range(4):
            error = refusal(lambda: stub.AnalyzeFile(gateway_pb2.AnalyzeFileRequest(content=too_long), timeout=30))
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "660 s" in error.details() and "600 s" in error.details()
    after = memory_mib(pid)
    assert after["VmHWM"] - before["VmHWM"] < 20 and after["VmRSS"] - before["VmRSS"] < 20


def test_files_over_the_size_limit_are_invalid_and_point_to_streaming(hostile_gateway):
    channel, stub = stub_for(hostile_gateway.address)
    with channel:
        error = refusal(lambda: stub.AnalyzeFile(
            gateway_pb2.AnalyzeFileRequest(content=b"RIFF" + b"\0" * 1_500_000), timeout=30))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "MAX_FILE_BYTES" in error.details() and "Analyze" in error.details()


@pytest.mark.parametrize("overrides, needle", [
    (dict(min_silence_duration_ms=1_000_000_000, max_speech_duration_s=1e9), "min_silence_duration_ms"),
    (dict(max_speech_duration_s=1e9), "max_speech_duration_s must be between 1 and 60 s"),
    (dict(max_speech_duration_s=math.inf), "finite"),
    (dict(threshold=math.nan), "finite"),
    (dict(threshold=1.5), "between 0 and 1"),
    (dict(max_speech_duration_s=-0.2), "got -0.2"),
    (dict(max_speech_duration_s=1.0, min_speech_duration_ms=2000), "must be longer than"),
    (dict(speech_pad_ms=100_000), "speech_pad_ms"),
])
def test_vad_overrides_are_bounded(hostile_gateway, vad_worker, overrides, needle):
    """Out-of-range overrides are INVALID_ARGUMENT every time, from the gateway before any worker
    stream opens, and from the VAD worker when it is called directly (never INTERNAL)."""
    channel, stub = stub_for(hostile_gateway.address)
    clip, rate = read_clip("zh_single", dtype="int16")
    with channel:
        for _ in range(10):
            error = refusal(lambda: list(analyze(stub, clip, rate, config(vad=common_pb2.VadConfig(**overrides)),
                                                 timeout=30)))
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
            assert needle in error.details(), error.details()
            assert not re.search(r"\.\d{6}", error.details())  # no float32 noise (-0.20000000298023224)
    with grpc.insecure_channel(vad_worker.address) as channel:
        vad = vad_pb2_grpc.VadServiceStub(channel)
        requests = [vad_pb2.StreamVadRequest(config=common_pb2.VadConfig(**overrides)),
                    vad_pb2.StreamVadRequest(audio=audio_pb2.AudioChunk(samples_f32le=np.zeros(1600, "<f4").tobytes()))]
        error = refusal(lambda: list(vad.StreamVad(iter(requests), timeout=30)))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error


def test_text_sentiment_needs_the_setting(hostile_gateway):
    channel, stub = stub_for(hostile_gateway.address)
    clip, rate = read_clip("zh_single", dtype="int16")
    with channel:
        error = refusal(lambda: list(analyze(stub, clip, rate, config(text_sentiment=True), timeout=30)))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "TEXT_SENTIMENT" in error.details()


def test_a_message_near_the_limit_reaches_the_vad_in_pieces(hostile_gateway, manifest):
    """One 4.4 MB PCM16 message (137 s of audio) becomes 8.8 MB as float32, over the workers'
    8 MiB limit: the gateway forwards it in pieces and every segment comes back."""
    clip, rate = read_clip("en_meeting", dtype="int16")
    audio = np.concatenate([clip] * 13)
    assert audio.nbytes > 4_000_000 and audio.nbytes * 2 > 8 * 2**20
    channel, stub = stub_for(hostile_gateway.address)
    requests = [gateway_pb2.AnalyzeRequest(config=config()), gateway_pb2.AnalyzeRequest(audio=audio.tobytes())]
    with channel:
        events = list(stub.Analyze(iter(requests), timeout=120))
    assert events[-1].WhichOneof("event") == "summary"
    assert len(kinds(events, "speech_ended")) == 13 * len(manifest["en_meeting"]["segments"])


# ---- the right status, every time ---------------------------------------------------------------

def test_unreachable_vad_is_unavailable_not_internal(tmp_path):
    gateway = start_server("gateway.server", "gateway-no-vad", wait_serving=False, env={
        **SPINE_ENV, "VAD_ADDRESS": "127.0.0.1:9"})
    try:
        clip, rate = read_clip("zh_single", dtype="int16")
        channel, stub = stub_for(gateway.address)
        with channel:
            for _ in range(5):
                error = refusal(lambda: list(analyze(stub, clip, rate, timeout=30)))
                assert error.code() == grpc.StatusCode.UNAVAILABLE, error
                assert error.details().startswith("vad worker")
    finally:
        gateway.stop()


def test_error_messages_are_short_and_clean(hostile_gateway):
    channel, stub = stub_for(hostile_gateway.address)
    clip, rate = read_clip("zh_single", dtype="int16")
    with channel:
        error = refusal(lambda: list(analyze(stub, clip, rate, config(language="x" * 1_000_000), timeout=30)))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert len(error.details()) < 200 and "xxxx" in error.details()
        error = refusal(lambda: stub.AnalyzeFile(gateway_pb2.AnalyzeFileRequest(content=b"junk" * 100), timeout=30))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "object at 0x" not in error.details() and "could not decode" in error.details()


def test_a_worker_refusal_always_reaches_the_client():
    """The VAD worker refuses a second stream (VAD_MAX_STREAMS=1): 20 streams in a row each get
    its RESOURCE_EXHAUSTED, never INTERNAL (the old session raced closing its request generator)."""
    vad = start_server("services.vad.server", "vad-one-stream", env={"VAD_MAX_STREAMS": "1"})
    gateway = start_server("gateway.server", "gateway-one-vad", env={**SPINE_ENV, "VAD_ADDRESS": vad.address},
                           serving_service="vad")
    release = threading.Event()
    clip, rate = read_clip("zh_single", dtype="int16")

    def held_open():
        yield gateway_pb2.AnalyzeRequest(config=config())
        yield gateway_pb2.AnalyzeRequest(audio=clip[:1600].tobytes())
        release.wait(60)

    try:
        channel, stub = stub_for(gateway.address)
        with channel:
            holder = stub.Analyze(held_open(), timeout=60)
            deadline = time.monotonic() + 10
            while True:  # until the held stream holds the VAD's only slot
                try:
                    list(analyze(stub, clip[:1600], rate, timeout=10))
                except grpc.RpcError:
                    break
                if holder.done():  # the probe overtook it and it was the one refused: again
                    holder = stub.Analyze(held_open(), timeout=60)
                assert time.monotonic() < deadline, (
                    f"the held stream never took the VAD slot:\n{gateway.log()}\n{vad.log()}")
            codes = []
            for _ in range(20):
                error = refusal(lambda: list(analyze(stub, clip, rate, timeout=30)))
                codes.append((error.code(), error.details().split(":")[0]))
            release.set()
            list(holder)
        assert codes == [(grpc.StatusCode.RESOURCE_EXHAUSTED, "vad worker")] * 20, codes
    finally:
        release.set()
        gateway.stop()
        vad.stop()


def test_every_session_ends_with_one_log_line_naming_its_status(vad_worker):
    """Operations item 6: finished, cancelled and expired sessions each get one end line with
    their status, and nothing spurious is logged at ERROR (no "Task was destroyed", no
    millisecond-rounding complaints). The log is what this item is about, so the test reads it."""
    metrics_port = free_port()
    gateway = start_server("gateway.server", "gateway-logs", env={
        **SPINE_ENV, "VAD_ADDRESS": vad_worker.address, "IDLE_TIMEOUT_S": "1", "METRICS_PORT": str(metrics_port)},
        serving_service="vad")
    clip, rate = read_clip("en_meeting", dtype="int16")

    def received_s() -> float:
        return sample(scrape(metrics_port), "speech_audio_received_seconds_total")

    try:
        channel, stub = stub_for(gateway.address)
        with channel:
            for _ in range(3):
                assert list(analyze(stub, clip, rate, timeout=30))[-1].WhichOneof("event") == "summary"
            before = received_s()

            def until_cancelled():
                yield gateway_pb2.AnalyzeRequest(config=config())
                yield gateway_pb2.AnalyzeRequest(audio=clip[: rate].tobytes())
                threading.Event().wait(30)

            cancelled = stub.Analyze(until_cancelled(), timeout=30)
            deadline = time.monotonic() + 10
            while received_s() < before + 1.0:  # cancel a session the gateway has begun, not a bare RPC
                assert time.monotonic() < deadline, gateway.log()
                time.sleep(0.02)
            cancelled.cancel()
            expired = refusal(lambda: list(stub.Analyze(_config_then_silence(), timeout=30)))
            assert expired.code() == grpc.StatusCode.OUT_OF_RANGE
        deadline = time.monotonic() + 10
        while len(ends := re.findall(r"(finished: |ended with (\S+))", gateway.log())) < 5:
            assert time.monotonic() < deadline, gateway.log()
            time.sleep(0.05)
        log = gateway.log()
        assert sorted(status or "OK" for _, status in ends) == ["CANCELLED", "OK", "OK", "OK", "OUT_OF_RANGE"], log
        assert " ERROR " not in log and "Task was destroyed" not in log and "still buffered" not in log, log
    finally:
        gateway.stop()


def _config_then_silence():
    yield gateway_pb2.AnalyzeRequest(config=config())
    threading.Event().wait(20)
