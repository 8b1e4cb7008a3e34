"""Gateway process: ``python -m gateway.server [--port N] [--vad-address A] ...``.

Serves the public SpeechAnalysisService API. It holds no model (and never imports
torch). Its health follows its workers (a ``Health.Watch`` stream on each,
off the request path):

* ``""`` and ``speech_analysis.v1.SpeechAnalysisService``: SERVING while the VAD and
  the ASR worker are SERVING (every Analyze needs both), NOT_SERVING as soon
  as either is down or unreachable, SERVING again by itself when they return;
* ``vad``, ``asr``, ``emotion``: each worker's own status as the gateway sees
  it (an emotion outage only degrades results: segments then carry an error
  for that part);
* ``liveness``: SERVING while the process runs (for liveness probes).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import sys
from pathlib import Path

import grpc

from speech_analysis.v1 import gateway_pb2, gateway_pb2_grpc
from services.common import grpc_server
from services.common.metrics import WORKER_UP
from services.common.modes import mode_value
from services.common.settings import GatewaySettings, load
from gateway.auth import BearerTokenInterceptor
from gateway.sentiment import load_sentiment
from gateway.servicer import Admission, SpeechAnalysisServiceServicer
from services.common.limits import longest_segment_bytes
from gateway.session import SessionLimits
from gateway.web import start_web_server
from gateway.workers import Workers, follow_worker_health

log = logging.getLogger("gateway")

def _credentials(settings: GatewaySettings) -> grpc.ServerCredentials | None:
    if not settings.tls_cert and not settings.tls_key:
        return None
    if not (settings.tls_cert and settings.tls_key):
        raise SystemExit("TLS needs both TLS_CERT and TLS_KEY")
    return grpc.ssl_server_credentials([(Path(settings.tls_key).read_bytes(),
                                         Path(settings.tls_cert).read_bytes())])


REQUIRED_PARTS = ("vad", "asr")
"""Workers every Analyze needs; the gateway is NOT_SERVING without any of them."""


def _web_ssl_context(settings: GatewaySettings) -> ssl.SSLContext | None:
    """The gateway's certificate for the web port too (token and audio never in clear)."""
    if not (settings.tls_cert and settings.tls_key):
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.tls_cert, settings.tls_key)
    return context


def health_follower(workers: Workers):
    """A ``run(health_driver=...)`` task: the gateway's health follows its workers'."""

    async def follow(handle: grpc_server.ServerHandle) -> None:
        serving = dict.fromkeys(workers.parts, False)
        ready = False
        for part in workers.parts:
            WORKER_UP.labels(part).set(0)

        async def report(part: str, up: bool) -> None:
            nonlocal ready
            if serving[part] != up:
                log.log(logging.INFO if up else logging.WARNING,
                        "%s worker %s", part, "SERVING" if up else "NOT_SERVING or unreachable")
            serving[part] = up
            WORKER_UP.labels(part).set(int(up))
            await handle.set_serving(up, [part])
            now_ready = all(serving[p] for p in REQUIRED_PARTS)
            if now_ready != ready:
                ready = now_ready
                missing = [p for p in REQUIRED_PARTS if not serving[p]]
                if ready:
                    log.info("gateway SERVING")
                else:
                    log.warning("gateway NOT_SERVING: waiting for %s", ", ".join(missing))
            await handle.set_serving(ready)

        log.info("gateway NOT_SERVING until %s report SERVING", " and ".join(REQUIRED_PARTS))
        await follow_worker_health(workers, report)

    return follow


async def main(argv: list[str]) -> None:
    settings = load(GatewaySettings, argv)
    grpc_server.configure_logging(settings.log_level, "gateway")
    try:
        limits = SessionLimits(max_session_s=settings.max_session_s,
                               worker_timeout_s=settings.worker_timeout_s,
                               default_mode=mode_value(settings.default_mode),
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
    servicer = SpeechAnalysisServiceServicer(workers, limits, admission)
    interceptors = [BearerTokenInterceptor(settings.auth_token)] if settings.auth_token else []
    web = None
    if settings.web_port >= 0:
        web, _port = await start_web_server(
            servicer, settings.host, settings.web_port, settings.auth_token,
            ssl_context=_web_ssl_context(settings),
            allowed_origins=[o.strip() for o in settings.web_allowed_origins.split(",") if o.strip()])

    async def load_sentiment_model() -> None:
        if settings.text_sentiment:  # before SERVING, off the event loop
            servicer.sentiment = await asyncio.to_thread(load_sentiment)
            log.info("text sentiment (SnowNLP) loaded")

    async def stop() -> None:
        if web is not None:
            web.close()
        await workers.close()

    await grpc_server.run(
        settings, "gateway",
        register=lambda server: gateway_pb2_grpc.add_SpeechAnalysisServiceServicer_to_server(servicer, server),
        service_names=[gateway_pb2.DESCRIPTOR.services_by_name["SpeechAnalysisService"].full_name],
        load=load_sentiment_model,
        health_driver=health_follower(workers),
        # Reflection describes the public API only, not the worker services.
        reflection_files=[gateway_pb2.DESCRIPTOR],
        health_names=workers.parts,
        credentials=_credentials(settings),
        interceptors=interceptors,
        on_stop=stop,
        streaming=True,
        # Up to twice the largest accepted message still reaches the servicer, which refuses it
        # with INVALID_ARGUMENT naming the limit; beyond that gRPC refuses it itself.
        max_receive_message_bytes=2 * max(settings.max_message_bytes, settings.max_file_bytes),
    )


def run() -> None:
    """Console-script entry point."""
    asyncio.run(main(sys.argv[1:]))


if __name__ == "__main__":
    run()
