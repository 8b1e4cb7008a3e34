"""Browser page + WebSocket bridge onto the same orchestration as gRPC ``Analyze``.

Served by the gateway process when ``WEB_PORT`` >= 0 (one port: HTTP GET for
the page's static files, ``/ws`` for the WebSocket). Protocol on ``/ws``:

1. client -> text: JSON ``StreamConfig`` (protobuf JSON names, e.g.
   ``{"sampleRateHz": 48000, "encoding": "PCM16LE", "mode": "PARAFORMER"}``),
   plus ``"token"`` when the gateway requires one;
2. client -> binary: audio in that encoding (the page sends its AudioContext's
   rate; the gateway resamples at the edge, as for gRPC clients);
3. client -> text ``{"type": "stop"}``: end of audio (like a gRPC half-close);
4. server -> text: one JSON ``AnalyzeEvent`` per event, then
   ``{"type": "closed"}``, or ``{"type": "error", "code": ..., "message": ...}``.
"""

from __future__ import annotations

import hmac
import json
import logging
import mimetypes
from http import HTTPStatus
from pathlib import Path
from typing import AsyncIterator

from google.protobuf import json_format
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from protos.v1 import gateway_pb2
from services.common.errors import InvalidInput, status_for
from gateway.servicer import SpeechAnalysisServicer

__all__ = ["start_web_server"]

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).with_name("web")
_MAX_FRAME_BYTES = 1 << 20


def _static(connection: ServerConnection, request: Request) -> Response | None:
    path = request.path.split("?", 1)[0]
    if path == "/ws":
        return None  # continue the WebSocket handshake
    name = "index.html" if path in ("/", "") else path.lstrip("/")
    file = (STATIC_DIR / name).resolve()
    if STATIC_DIR.resolve() not in file.parents or not file.is_file():
        return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
    body = file.read_bytes()
    content_type = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
    headers = Headers([("Content-Type", f"{content_type}; charset=utf-8"),
                       ("Content-Length", str(len(body))), ("Cache-Control", "no-cache")])
    return Response(HTTPStatus.OK, "OK", headers, body)


def _handler(servicer: SpeechAnalysisServicer, token: str | None):
    async def handle(connection: ServerConnection) -> None:
        try:
            first = json.loads(await connection.recv())
            if token is not None and not hmac.compare_digest(str(first.pop("token", "")), token):
                await connection.send(json.dumps({"type": "error", "code": "UNAUTHENTICATED",
                                                  "message": "missing or invalid token"}))
                return
            first.pop("token", None)
            try:
                config = json_format.ParseDict(first, gateway_pb2.StreamConfig())
            except json_format.ParseError as exc:
                raise InvalidInput(f"bad StreamConfig JSON: {exc}") from None

            async def chunks() -> AsyncIterator[bytes]:
                async for message in connection:
                    if isinstance(message, bytes):
                        yield message
                    elif json.loads(message).get("type") == "stop":
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


async def start_web_server(servicer: SpeechAnalysisServicer, host: str, port: int, token: str | None):
    """Start serving; returns the websockets Server (``.close()`` to stop) and its port."""
    server = await serve(_handler(servicer, token), host, port, process_request=_static,
                         max_size=_MAX_FRAME_BYTES)
    bound = server.sockets[0].getsockname()[1]
    log.info("web page on http://%s:%d/", host, bound)
    return server, bound
