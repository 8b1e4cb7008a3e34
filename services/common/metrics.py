"""Prometheus metrics shared by every process.

prometheus_client's default registry already exports
``process_resident_memory_bytes`` and CPU time on Linux; this module adds the
service-level series. ``start_metrics_server`` serves ``/metrics`` over HTTP.

Who observes what:

* every RPC of every process: :class:`~services.common.grpc_server.MetricsInterceptor`
  (``RPCS``, ``RPC_LATENCY_S`` for unary calls, ``STREAM_DURATION_S`` for
  streaming calls, ``ACTIVE_RPCS``); servicers never count calls by hand;
* model calls: ``services/common/batching.py`` (``MODEL_CALL_S``, ``QUEUE_DEPTH``)
  and the worker servicers (``MODEL_COMPUTE_S``, ``MODEL_AUDIO_S``);
* models loaded: the worker servers (``MODEL_LOAD_S``, ``MODELS_INFO``) and the emotion
  servicer, which may load lazily (``MODEL_LOADS``);
* the gateway: ``gateway/auth.py`` and ``gateway/web.py`` (``AUTH_FAILURES``),
  ``gateway/server.py`` (``WORKER_UP``) and the Analyze session
  (``FINAL_RESULT_LATENCY_S``, ``AUDIO_RECEIVED_S``, ``SEGMENTS``,
  ``SEGMENT_PART_FAILURES``).
"""

from __future__ import annotations

import logging

from prometheus_client import Counter, Gauge, Histogram, start_http_server

__all__ = [
    "RPCS",
    "RPC_LATENCY_S",
    "STREAM_DURATION_S",
    "ACTIVE_RPCS",
    "QUEUE_DEPTH",
    "MODEL_CALL_S",
    "MODEL_COMPUTE_S",
    "MODEL_AUDIO_S",
    "MODEL_LOAD_S",
    "MODEL_LOADS",
    "MODELS_INFO",
    "AUTH_FAILURES",
    "WORKER_UP",
    "FINAL_RESULT_LATENCY_S",
    "AUDIO_RECEIVED_S",
    "SEGMENTS",
    "SEGMENT_PART_FAILURES",
    "observe_model_compute",
    "start_metrics_server",
]

log = logging.getLogger(__name__)

_LATENCY_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32)
_SESSION_BUCKETS_S = (0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 900, 1800, 3600, 4 * 3600)

# ---- every RPC, counted once by the server interceptor --------------------------------------
RPCS = Counter("speech_rpcs_total", "RPCs finished, by final status code",
               ["service", "method", "code"])
RPC_LATENCY_S = Histogram("speech_rpc_latency_seconds",
                          "Duration of unary RPCs (request in, response out)",
                          ["service", "method", "code"], buckets=_LATENCY_BUCKETS_S)
STREAM_DURATION_S = Histogram("speech_stream_duration_seconds",
                              "Duration of streaming RPCs (a whole Analyze session, a VAD stream)",
                              ["service", "method", "code"], buckets=_SESSION_BUCKETS_S)
ACTIVE_RPCS = Gauge("speech_active_rpcs", "RPCs in progress", ["service", "method"])

# ---- models ------------------------------------------------------------------------------------
QUEUE_DEPTH = Gauge("speech_queue_depth", "Requests waiting for the model", ["service"])
MODEL_CALL_S = Histogram("speech_model_call_seconds", "Wall time of one (batched) model call",
                         ["service"], buckets=_LATENCY_BUCKETS_S)
MODEL_COMPUTE_S = Counter(
    "speech_model_compute_seconds_total",
    "Model compute spent, per model; divide its rate by speech_model_audio_seconds_total's "
    "for compute seconds per audio second (the real-time factor)", ["model"])
MODEL_AUDIO_S = Counter("speech_model_audio_seconds_total", "Audio processed, per model", ["model"])
MODEL_LOAD_S = Gauge("speech_model_load_seconds", "Time spent loading models", ["service"])
MODEL_LOADS = Counter("speech_model_loads_total",
                      "Model loads completed (a lazy-loading worker loads on its first request, once)",
                      ["service"])
MODELS_INFO = Gauge(
    "speech_models_info",
    "1 per loaded model set; random_weights=\"true\" means generated test models (meaningless output)",
    ["service", "models", "random_weights"])

# ---- gateway -----------------------------------------------------------------------------------
AUTH_FAILURES = Counter("speech_auth_failures_total",
                        "Requests refused for a missing or wrong token",
                        ["transport", "reason"])  # transport: grpc|websocket; reason: missing|invalid
WORKER_UP = Gauge("speech_worker_serving",
                  "1 while the gateway sees this worker SERVING, else 0", ["part"])
FINAL_RESULT_LATENCY_S = Histogram(
    "speech_final_result_latency_seconds",
    "From the end of a speech segment (VAD speech_ended) to its segment_result being sent",
    ["mode"], buckets=(0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 8, 13, 20, 30))
AUDIO_RECEIVED_S = Counter("speech_audio_received_seconds_total",
                           "Client audio received by Analyze sessions, in seconds", ["mode"])
SEGMENTS = Counter("speech_segments_total", "Speech segments analysed (segment_result sent)", ["mode"])
SEGMENT_PART_FAILURES = Counter(
    "speech_segment_part_failures_total",
    "Segments whose result lacks one part because its worker call failed", ["part", "code"])


def observe_model_compute(model: str, compute_s: float, audio_s: float) -> None:
    """Count one request's model compute and audio length for ``model``."""
    MODEL_COMPUTE_S.labels(model).inc(max(compute_s, 0.0))
    MODEL_AUDIO_S.labels(model).inc(max(audio_s, 0.0))


def start_metrics_server(port: int, host: str) -> int | None:
    """Serve /metrics on ``port`` (0 = any free port); -1 disables. Returns the port."""
    if port < 0:
        return None
    server, _thread = start_http_server(port, addr=host)
    bound = server.server_address[1]
    log.info("metrics on http://%s:%d/metrics", host, bound)
    return bound
