"""Prometheus metrics shared by every process.

prometheus_client's default registry already exports
``process_resident_memory_bytes`` and CPU time on Linux; this module adds the
service-level series. ``start_metrics_server`` serves ``/metrics`` over HTTP.
"""

from __future__ import annotations

import logging

from prometheus_client import Counter, Gauge, Histogram, start_http_server

__all__ = [
    "REQUESTS",
    "REQUEST_LATENCY_S",
    "ACTIVE_STREAMS",
    "QUEUE_DEPTH",
    "MODEL_LOAD_S",
    "start_metrics_server",
]

log = logging.getLogger(__name__)

REQUESTS = Counter("speech_requests_total", "RPCs handled", ["service", "method", "code"])
REQUEST_LATENCY_S = Histogram(
    "speech_request_latency_seconds", "RPC or model-call latency", ["service", "method"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32))
ACTIVE_STREAMS = Gauge("speech_active_streams", "Open streaming RPCs", ["service"])
QUEUE_DEPTH = Gauge("speech_queue_depth", "Requests waiting for the model", ["service"])
MODEL_LOAD_S = Gauge("speech_model_load_seconds", "Time spent loading models", ["service"])


def start_metrics_server(port: int, host: str) -> int | None:
    """Serve /metrics on ``port`` (0 = any free port); -1 disables. Returns the port."""
    if port < 0:
        return None
    server, _thread = start_http_server(port, addr=host)
    bound = server.server_address[1]
    log.info("metrics on http://%s:%d/metrics", host, bound)
    return bound
