"""Browser page + WebSocket bridge onto the same orchestration as gRPC ``Analyze``.

Served by the gateway process when ``WEB_PORT`` >= 0 (one port: HTTP GET for
the page's static files, ``/ws`` for the WebSocket). Protocol on ``/ws``:

1. client -> text: JSON ``StreamConfig`` (protobuf JSON names, e.g.
   ``{"sampleRateHz": 48000, "encoding": "AUDIO_ENCODING_PCM16LE", "mode": "ASR_MODE_PARAFORMER"}``),
   plus ``"token"`` when the gateway requires one;
2. client -> binary: audio in that encoding (the page sends its AudioContext's
   rate; the gateway resamples at the edge, as for gRPC clients);
3. client -> text ``{"type": "stop"}``: end of audio (like a gRPC half-close);
4. server -> text: one JSON ``AnalyzeResponse`` per event, then
   ``{"type": "closed"}``, or ``{"type": "error", "code": ..., "message": ...}``
   (a malformed message gets ``INVALID_ARGUMENT``, a wrong token ``UNAUTHENTICATED``).

Security: with ``TLS_CERT``/``TLS_KEY`` the port serves HTTPS/WSS with the
gateway's certificate. Browsers let any web page open a WebSocket to any
host, loopback included, so the handshake checks ``Origin``: the page's own
origin (the Origin names the host the request was sent to, and that host is
an IP address or ``localhost``, so DNS rebinding cannot pass), the origins in
``WEB_ALLOWED_ORIGINS`` (``*`` for any) and clients that send no Origin
(not a browser) are let in; every other site gets HTTP 403.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import mimetypes
import ssl
from http import HTTPStatus
from pathlib import Path
from typing import AsyncIterator, Sequence
from urllib.parse import urlsplit

from google.protobuf import json_format
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers, MultipleValuesError
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from speech_analysis.v1 import gateway_pb2
from services.common.errors import InvalidInput, status_for
from services.common.metrics import AUTH_FAILURES
from gateway.servicer import SpeechAnalysisServiceServicer

__all__ = ["start_web_server"]

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).with_name("web")
_MAX_FRAME_BYTES = 1 << 20


def _is_literal_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def origin_allowed(origin: str | None, host_header: str | None, scheme: str,
                   allowed: Sequence[str]) -> bool:
    """Whether a WebSocket handshake with this ``Origin`` may proceed (see the module doc)."""
    if origin is None:
        return True  # not a browser: browsers always send Origin on WebSocket handshakes
    origin = origin.rstrip("/")
    if "*" in allowed or origin in allowed:
        return True
    parts = urlsplit(origin)
    if parts.scheme != scheme or not host_header or parts.netloc.lower() != host_header.lower():
        return False
    return _is_literal_host((parts.hostname or "").lower())


def _process_request(scheme: str, allowed: Sequence[str]):
    def process(connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path == "/ws":
            try:
                origin, host = request.headers.get("Origin"), request.headers.get("Host")
            except MultipleValuesError:
                return connection.respond(HTTPStatus.BAD_REQUEST, "repeated Origin or Host header\n")
            if not origin_allowed(origin, host, scheme, allowed):
                log.warning("refused a WebSocket from origin %r (set WEB_ALLOWED_ORIGINS to allow it)", origin)
                return connection.respond(HTTPStatus.FORBIDDEN, "origin not allowed\n")
            return None  # continue the WebSocket handshake
        return _static(connection, path)
    return process


def _static(connection: ServerConnection, path: str) -> Response:
    name = "index.html" if path in ("/", "") else path.lstrip("/")
    file = (STATIC_DIR / name).resolve()
    if STATIC_DIR.resolve() not in file.parents or not file.is_file():
        return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
    body = file.read_bytes()
    content_type = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
    headers = Headers([("Content-Type", f"{content_type}; charset=utf-8"),
                       ("Content-Length", str(len(body))), ("Cache-Control", "no-cache")])
    return Response(HTTPStatus.OK, "OK", headers, body)


def _json_object(message: str | bytes, what: str) -> dict:
    if not isinstance(message, str):
        raise InvalidInput(f"{what} must be a JSON text message, not binary")
    try:
        value = json.loads(message)
    except ValueError as exc:
        raise InvalidInput(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidInput(f"{what} must be a JSON object")
    return value


def _handler(servicer: SpeechAnalysisServiceServicer, token: str | None):
    expected = token.encode() if token is not None else None

    async def handle(connection: ServerConnection) -> None:
        try:
            first = _json_object(await connection.recv(), "the first message (StreamConfig)")
            supplied = first.pop("token", None)
            if expected is not None:
                supplied_bytes = supplied.encode("utf-8", "replace") if isinstance(supplied, str) else b""
                if not hmac.compare_digest(supplied_bytes, expected):
                    AUTH_FAILURES.labels("websocket", "invalid" if supplied else "missing").inc()
                    await connection.send(json.dumps({"type": "error", "code": "UNAUTHENTICATED",
                                                      "message": "missing or invalid token"}))
                    return
            try:
                config = json_format.ParseDict(first, gateway_pb2.StreamConfig())
            except json_format.ParseError as exc:
                raise InvalidInput(f"bad StreamConfig JSON: {exc}") from None

            async def chunks() -> AsyncIterator[bytes]:
                async for message in connection:
                    if isinstance(message, bytes):
                        yield message
                    elif _json_object(message, "a text message").get("type") == "stop":
                        return

            async for event in servicer.stream_session(config, chunks(), method="WebSocket"):
                await connection.send(json.dumps(json_format.MessageToDict(event), ensure_ascii=False))
            await connection.send(json.dumps({"type": "closed"}))
        except ConnectionClosed:
            pass
        except Exception as exc:  # noqa: BLE001 - same mapping as the gRPC boundary
            code, message = status_for(exc)
            if code.name == "INTERNAL":
                log.exception("web session failed")
            try:
                await connection.send(json.dumps({"type": "error", "code": code.name, "message": message}))
            except ConnectionClosed:
                pass

    return handle


async def start_web_server(servicer: SpeechAnalysisServiceServicer, host: str, port: int, token: str | None,
                           ssl_context: ssl.SSLContext | None = None, allowed_origins: Sequence[str] = ()):
    """Start serving; returns the websockets Server (``.close()`` to stop) and its port."""
    scheme = "https" if ssl_context is not None else "http"
    server = await serve(_handler(servicer, token), host, port,
                         process_request=_process_request(scheme, tuple(o.rstrip("/") for o in allowed_origins)),
                         max_size=_MAX_FRAME_BYTES, ssl=ssl_context)
    bound = server.sockets[0].getsockname()[1]
    log.info("web page on %s://%s:%d/", scheme, host, bound)
    if token is None and host not in ("127.0.0.1", "::1", "localhost"):
        log.warning("web page served beyond loopback without AUTH_TOKEN: anyone who can reach "
                    "%s:%d can use the service", host, bound)
    return server, bound
