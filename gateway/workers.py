"""Channels and stubs to the workers, with gRPC's own load balancing and retries.

Each worker address may be a DNS name resolving to several replicas
(``dns:///asr:50052``); the ``round_robin`` policy spreads calls over all of
them. Unary ASR/emotion calls are idempotent, so the service config retries
them on ``UNAVAILABLE`` (a replica restarting) instead of a hand-written loop.
The VAD stream is not retried: a stream's state lives in one replica.

gRPC keeps a call's messages for a retry only up to
``grpc.per_rpc_retry_buffer_size`` (256 KiB by default, ~4 s of float32
audio): beyond it the call is committed and never retried. The buffer is
raised to the largest message a channel sends, so every segment is retriable.

:func:`follow_worker_health` watches each worker's ``grpc.health.v1`` status
(a ``Watch`` stream per worker, re-opened whenever it ends) and keeps the
gateway's own health in step: see ``gateway/server.py``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Awaitable, Callable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from speech_analysis.worker.v1 import asr_pb2_grpc, emotion_pb2_grpc, speaker_pb2_grpc, vad_pb2_grpc
from services.common.grpc_server import channel_options
from services.common.settings import GatewaySettings

__all__ = ["Workers", "SERVICE_CONFIG", "follow_worker_health"]

log = logging.getLogger(__name__)

SERVICE_CONFIG = {
    "loadBalancingConfig": [{"round_robin": {}}],
    "methodConfig": [{
        "name": [{"service": "speech_analysis.worker.v1.AsrService"},
                 {"service": "speech_analysis.worker.v1.EmotionService"},
                 {"service": "speech_analysis.worker.v1.SpeakerService"}],
        "retryPolicy": {
            "maxAttempts": 3,
            "initialBackoff": "0.2s",
            "maxBackoff": "1s",
            "backoffMultiplier": 2,
            "retryableStatusCodes": ["UNAVAILABLE"],
        },
    }],
}


def _channel(address: str, max_message_bytes: int) -> grpc.aio.Channel:
    options = channel_options(max_message_bytes) + [
        ("grpc.service_config", json.dumps(SERVICE_CONFIG)),
        ("grpc.enable_retries", 1),
        # Keep whole segments for retries (default 256 KiB, about 4 s of float32 audio).
        ("grpc.per_rpc_retry_buffer_size", max_message_bytes + 64 * 1024),
        # Reconnect quickly after a worker restarts (default backoff grows to 120 s).
        ("grpc.initial_reconnect_backoff_ms", 200),
        ("grpc.max_reconnect_backoff_ms", 2000),
    ]
    return grpc.aio.insecure_channel(address, options=options)


@dataclass
class Workers:
    vad: vad_pb2_grpc.VadServiceStub
    asr: asr_pb2_grpc.AsrServiceStub
    emotion: emotion_pb2_grpc.EmotionServiceStub
    channels: dict[str, grpc.aio.Channel]
    """Part name -> channel for every worker this gateway has: vad, asr, emotion, and speaker when
    SPEAKER_ADDRESS is set."""
    speaker: speaker_pb2_grpc.SpeakerServiceStub | None = None
    """None when no speaker worker is configured (SPEAKER_ADDRESS unset)."""

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(self.channels)

    @classmethod
    def connect(cls, settings: GatewaySettings) -> "Workers":
        # The workers' own limit: every message the gateway sends fits it (audio goes to the
        # VAD in <= 1 s messages; the longest segment is checked against it at start).
        size = settings.max_message_bytes
        addresses = {"vad": settings.vad_address, "asr": settings.asr_address,
                     "emotion": settings.emotion_address, "speaker": settings.speaker_address}
        channels = {part: _channel(address, size) for part, address in addresses.items() if address}
        speaker = channels.get("speaker")
        return cls(vad_pb2_grpc.VadServiceStub(channels["vad"]), asr_pb2_grpc.AsrServiceStub(channels["asr"]),
                   emotion_pb2_grpc.EmotionServiceStub(channels["emotion"]), channels,
                   speaker_pb2_grpc.SpeakerServiceStub(speaker) if speaker is not None else None)

    async def close(self) -> None:
        for channel in self.channels.values():
            await channel.close()


async def _watch(part: str, channel: grpc.aio.Channel,
                 report: Callable[[str, bool], Awaitable[None]]) -> None:
    """Report ``part``'s health on every change; NOT_SERVING while unreachable."""
    stub = health_pb2_grpc.HealthStub(channel)
    while True:
        try:
            # wait_for_ready: while the worker is down the call waits for the channel's
            # reconnect (backoff capped at 2 s) instead of failing in a tight loop.
            async for reply in stub.Watch(health_pb2.HealthCheckRequest(service=""), wait_for_ready=True):
                await report(part, reply.status == health_pb2.HealthCheckResponse.SERVING)
        except grpc.aio.AioRpcError as exc:
            log.debug("%s health watch ended: %s", part, exc.code().name)
        # Stream ended (worker stopped or unreachable): not serving until a new watch says so.
        await report(part, False)
        await asyncio.sleep(0.2)


async def follow_worker_health(workers: "Workers",
                               report: Callable[[str, bool], Awaitable[None]]) -> None:
    """Watch every worker until cancelled; ``report(part, serving)`` on each change."""
    tasks = [asyncio.create_task(_watch(part, channel, report), name=f"watch-{part}")
             for part, channel in workers.channels.items()]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
