"""Gateway process: ``python -m gateway.server [--port N] [--vad-address A] ...``.

Serves the public SpeechAnalysis API. It holds no model (and never imports
torch); it reports SERVING once the VAD worker it streams to is SERVING.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from protos.v1 import asr_pb2, gateway_pb2, gateway_pb2_grpc
from services.common import grpc_server
from services.common.settings import GatewaySettings, load
from gateway.auth import BearerTokenInterceptor
from gateway.sentiment import load_sentiment
from gateway.servicer import Admission, SpeechAnalysisServicer
from services.common.limits import longest_segment_bytes
from gateway.session import SessionLimits
from gateway.web import start_web_server
from gateway.workers import Workers

log = logging.getLogger("gateway")

_MODES = {"paraformer": asr_pb2.PARAFORMER, "sensevoice": asr_pb2.SENSEVOICE}


def _credentials(settings: GatewaySettings) -> grpc.ServerCredentials | None:
    if not settings.tls_cert and not settings.tls_key:
        return None
    if not (settings.tls_cert and settings.tls_key):
        raise SystemExit("TLS needs both TLS_CERT and TLS_KEY")
    return grpc.ssl_server_credentials([(Path(settings.tls_key).read_bytes(),
                                         Path(settings.tls_cert).read_bytes())])


async def _wait_for_vad(workers: Workers) -> None:
    """Block until the VAD worker reports SERVING (every stream needs it)."""
    health = health_pb2_grpc.HealthStub(workers.channels[0])
    announced = False
    while True:
        try:
            reply = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                return
        except grpc.aio.AioRpcError:
            pass
        if not announced:
            log.info("waiting for the VAD worker to report SERVING")
            announced = True
        await asyncio.sleep(0.2)


async def main(argv: list[str]) -> None:
    settings = load(GatewaySettings, argv)
    grpc_server.configure_logging(settings.log_level, "gateway")
    if settings.default_mode not in _MODES:
        raise SystemExit(f"DEFAULT_MODE must be paraformer or sensevoice, got {settings.default_mode!r}")
    try:
        limits = SessionLimits(max_session_s=settings.max_session_s,
                               worker_timeout_s=settings.worker_timeout_s,
                               default_mode=_MODES[settings.default_mode],
                               max_vad_lag_s=settings.max_vad_lag_s,
                               max_segments_in_flight=settings.max_segments_in_flight)
    except ValueError as exc:
        raise SystemExit(f"gateway settings (MAX_VAD_LAG_S, MAX_SEGMENTS_IN_FLIGHT): {exc}") from None
    if longest_segment_bytes() + 1024 > settings.max_message_bytes:
        raise SystemExit(f"MAX_MESSAGE_BYTES={settings.max_message_bytes} is too small for the longest "
                         f"segment ({longest_segment_bytes()} bytes of float32 audio); use at least "
                         f"{longest_segment_bytes() + 1024}")
    try:
        admission = Admission(max_sessions=settings.max_sessions, idle_timeout_s=settings.idle_timeout_s,
                              max_file_bytes=settings.max_file_bytes,
                              max_audio_message_bytes=settings.max_message_bytes)
    except ValueError as exc:
        raise SystemExit(f"gateway settings: {exc}") from None
    workers = Workers.connect(settings)
    servicer = SpeechAnalysisServicer(workers, limits, admission)
    interceptors = [BearerTokenInterceptor(settings.auth_token)] if settings.auth_token else []
    web = None
    if settings.web_port >= 0:
        web, _port = await start_web_server(servicer, settings.host, settings.web_port, settings.auth_token)

    async def load_parts() -> None:
        if settings.text_sentiment:  # before SERVING, off the event loop
            servicer.sentiment = await asyncio.to_thread(load_sentiment)
            log.info("text sentiment (SnowNLP) loaded")
        await _wait_for_vad(workers)

    async def stop() -> None:
        if web is not None:
            web.close()
        await workers.close()

    await grpc_server.run(
        settings, "gateway",
        register=lambda server: gateway_pb2_grpc.add_SpeechAnalysisServicer_to_server(servicer, server),
        service_names=[gateway_pb2.DESCRIPTOR.services_by_name["SpeechAnalysis"].full_name],
        load=load_parts,
        credentials=_credentials(settings),
        interceptors=interceptors,
        on_stop=stop,
        streaming=True,
        # Up to twice the largest accepted message still reaches the servicer, which refuses it
        # with INVALID_ARGUMENT naming the limit; beyond that gRPC refuses it itself.
        max_receive_message_bytes=2 * max(settings.max_message_bytes, settings.max_file_bytes),
    )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
