"""Channels and stubs to the workers, with gRPC's own load balancing and retries.

Each worker address may be a DNS name resolving to several replicas
(``dns:///asr:50052``); the ``round_robin`` policy spreads calls over all of
them. Unary ASR/emotion calls are idempotent, so the service config retries
them on ``UNAVAILABLE`` (a replica restarting) instead of a hand-written loop.
The VAD stream is not retried: a stream's state lives in one replica.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import grpc

from protos.v1 import asr_pb2_grpc, emotion_pb2_grpc, vad_pb2_grpc
from services.common.grpc_server import channel_options
from services.common.settings import GatewaySettings

__all__ = ["Workers", "SERVICE_CONFIG"]

SERVICE_CONFIG = {
    "loadBalancingConfig": [{"round_robin": {}}],
    "methodConfig": [{
        "name": [{"service": "speech_analysis.v1.AsrService"},
                 {"service": "speech_analysis.v1.EmotionService"}],
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
    channels: tuple[grpc.aio.Channel, ...]

    @classmethod
    def connect(cls, settings: GatewaySettings) -> "Workers":
        # The workers' own limit: every message the gateway sends fits it (audio goes to the
        # VAD in <= 1 s messages; the longest segment is checked against it at start).
        size = settings.max_message_bytes
        vad, asr, emotion = (_channel(a, size) for a in
                             (settings.vad_address, settings.asr_address, settings.emotion_address))
        return cls(vad_pb2_grpc.VadServiceStub(vad), asr_pb2_grpc.AsrServiceStub(asr),
                   emotion_pb2_grpc.EmotionServiceStub(emotion), (vad, asr, emotion))

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()
