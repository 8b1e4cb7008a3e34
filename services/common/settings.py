"""All configuration of every process, in one place.

Each process has a frozen settings dataclass. Values come from, in order of
precedence: command-line arguments, environment variables, documented
defaults. This is the only module that reads ``os.environ`` for configuration;
everything else receives settings objects.

Usage::

    settings = load(VadSettings, argv)        # in a server's main()

Every field's metadata names its environment variable and documents it; the
README table is generated from the same metadata (``python -m
services.common.settings``).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path
from typing import Any, Mapping, Sequence, TypeVar

__all__ = [
    "PROJECT_ROOT",
    "ServerSettings",
    "VadSettings",
    "AsrSettings",
    "EmotionSettings",
    "GatewaySettings",
    "ModelSettings",
    "load",
    "env_flag",
]

PROJECT_ROOT = Path(__file__).resolve().parents[2]

T = TypeVar("T")


def _field(default: Any, env: str, help: str) -> Any:
    return dataclasses.field(default=default, metadata={"env": env, "help": help})


@dataclasses.dataclass(frozen=True)
class ModelSettings:
    """Where models live; see services/common/model_paths.py for the rules."""

    model_cache_dir: str | None = _field(
        None, "MODEL_CACHE_DIR",
        "Paraformer trio + SenseVoice cache. Unset: pretrained_models/model_cache, "
        "then /data/emotion_models, then /data/emotion-models.")
    project_root: str = _field(
        str(PROJECT_ROOT), "PROJECT_ROOT",
        "Root holding pretrained_models/emotion-recognition-wav2vec2-IEMOCAP/ and silero-vad/.")


@dataclasses.dataclass(frozen=True)
class ServerSettings:
    """Options every gRPC process shares."""

    host: str = _field("127.0.0.1", "BIND_HOST", "Address to bind; workers default to loopback.")
    port: int = _field(0, "PORT", "gRPC port; 0 picks a free port (reported in --port-file).")
    port_file: str | None = _field(None, "PORT_FILE", "Write the bound port here once listening.")
    metrics_port: int = _field(-1, "METRICS_PORT", "Prometheus /metrics port; -1 disables, 0 picks a free one.")
    grace_s: float = _field(5.0, "SHUTDOWN_GRACE_S", "Seconds in-flight calls get to finish on SIGTERM.")
    max_message_bytes: int = _field(8 * 1024 * 1024, "MAX_MESSAGE_BYTES",
                                    "Largest gRPC message between the processes, and largest audio "
                                    "message a client may send.")
    max_connection_age_s: float = _field(300.0, "MAX_CONNECTION_AGE_S",
                                         "Connections are recycled after this long so clients re-resolve "
                                         "DNS and reach new replicas; streams in flight are never cut.")
    torch_threads: int = _field(2, "TORCH_THREADS", "torch intra-op threads for model inference.")
    log_level: str = _field("INFO", "LOG_LEVEL", "Python logging level.")


@dataclasses.dataclass(frozen=True)
class VadSettings(ServerSettings):
    port: int = _field(50051, "VAD_PORT", "VAD worker gRPC port.")
    default_backend: str = _field("silero", "VAD_BACKEND", "Default VAD backend: silero or fsmn.")
    max_streams: int = _field(64, "VAD_MAX_STREAMS", "Concurrent VAD streams before RESOURCE_EXHAUSTED.")


@dataclasses.dataclass(frozen=True)
class AsrSettings(ServerSettings):
    port: int = _field(50052, "ASR_PORT", "ASR worker gRPC port.")
    mode: str = _field("paraformer", "ASR_MODE", "Models to serve: paraformer, sensevoice or both.")
    max_batch: int = _field(4, "ASR_MAX_BATCH", "Most segments decoded in one model call.")
    batch_wait_ms: int = _field(10, "ASR_BATCH_WAIT_MS", "How long to wait for more segments to batch.")
    max_queue: int = _field(16, "ASR_MAX_QUEUE", "Queued segments before RESOURCE_EXHAUSTED.")
    max_segment_s: float = _field(30.0, "ASR_MAX_SEGMENT_S", "Longer segments are split by FSMN-VAD (paraformer).")
    quantize_int8: bool = _field(False, "ASR_INT8", "Dynamic int8 quantization of linear layers (about half "
                                 "the memory, 1.7-2.7x faster; each request is then its own model call).")
    sensevoice_timestamps: bool = _field(False, "ASR_SENSEVOICE_TIMESTAMPS",
                                         "Token timestamps in SenseVoice mode (CTC forced alignment, "
                                         "about 10% more compute and no batching gain).")
    lean_loading: bool = _field(True, "ASR_LEAN_LOADING",
                                "Memory-map checkpoints while loading (lower peak/resident memory); "
                                "0 falls back to FunASR's own loader.")


@dataclasses.dataclass(frozen=True)
class EmotionSettings(ServerSettings):
    port: int = _field(50053, "EMOTION_PORT", "Emotion worker gRPC port.")
    lazy_load: bool = _field(False, "EMOTION_LAZY_LOAD", "Load the model on the first request, not at start.")
    max_batch: int = _field(4, "EMOTION_MAX_BATCH", "Most segments classified in one model call.")
    batch_wait_ms: int = _field(10, "EMOTION_BATCH_WAIT_MS", "How long to wait for more segments to batch.")
    max_queue: int = _field(16, "EMOTION_MAX_QUEUE", "Queued segments before RESOURCE_EXHAUSTED.")
    window_s: float = _field(10.0, "EMOTION_WINDOW_S", "Long segments are classified in windows of this length.")
    window_overlap_s: float = _field(2.0, "EMOTION_WINDOW_OVERLAP_S", "Overlap between consecutive windows.")
    single_window_max_s: float = _field(15.0, "EMOTION_SINGLE_WINDOW_MAX_S",
                                        "Segments up to this long are classified whole (>= EMOTION_WINDOW_S).")
    max_batch_audio_s: float = _field(10.0, "EMOTION_MAX_BATCH_AUDIO_S",
                                      "Most audio (summed over windows) in one model call; bounds "
                                      "activation memory (~12 MB per second).")
    min_segment_ms: int = _field(100, "EMOTION_MIN_SEGMENT_MS",
                                 "Shorter segments are refused with INVALID_ARGUMENT.")
    quantize_int8: bool = _field(False, "EMOTION_INT8",
                                 "Dynamic int8 quantization of linear layers (less memory, faster; "
                                 "probabilities move slightly).")


@dataclasses.dataclass(frozen=True)
class GatewaySettings(ServerSettings):
    host: str = _field("127.0.0.1", "GATEWAY_HOST", "Gateway bind address (0.0.0.0 to serve other hosts).")
    port: int = _field(50050, "GATEWAY_PORT", "Public gRPC port.")
    vad_address: str = _field("127.0.0.1:50051", "VAD_ADDRESS", "VAD worker target (dns:///name:port for replicas).")
    asr_address: str = _field("127.0.0.1:50052", "ASR_ADDRESS", "ASR worker target.")
    emotion_address: str = _field("127.0.0.1:50053", "EMOTION_ADDRESS", "Emotion worker target.")
    default_mode: str = _field("paraformer", "DEFAULT_MODE", "Mode used when a stream does not name one.")
    max_sessions: int = _field(16, "MAX_SESSIONS", "Concurrent Analyze streams before RESOURCE_EXHAUSTED.")
    max_session_s: float = _field(4 * 3600.0, "MAX_SESSION_S", "Longest audio one stream may send, in seconds.")
    idle_timeout_s: float = _field(30.0, "IDLE_TIMEOUT_S",
                                   "A stream that sends nothing (not even its config) for this long is "
                                   "ended with OUT_OF_RANGE and frees its slot.")
    max_file_bytes: int = _field(8 * 1024 * 1024, "MAX_FILE_BYTES",
                                 "Largest AnalyzeFile upload; larger recordings stream through Analyze.")
    text_sentiment: bool = _field(False, "TEXT_SENTIMENT",
                                  "Load SnowNLP at start so streams may ask for text_sentiment "
                                  "(+410 MiB resident in the gateway, measured).")
    worker_timeout_s: float = _field(30.0, "WORKER_TIMEOUT_S", "Deadline for one ASR/emotion call.")
    max_vad_lag_s: float = _field(30.0, "MAX_VAD_LAG_S",
                                  "A stream stops reading client audio while this far ahead of the VAD "
                                  "(back-pressure for faster-than-real-time clients; >= 1).")
    max_segments_in_flight: int = _field(4, "MAX_SEGMENTS_IN_FLIGHT",
                                         "Segments one stream has in ASR/emotion at once; a faster "
                                         "client waits (>= 1).")
    auth_token: str | None = _field(None, "AUTH_TOKEN", "If set, clients must send 'authorization: Bearer <token>'.")
    tls_cert: str | None = _field(None, "TLS_CERT", "PEM certificate; with TLS_KEY enables TLS.")
    tls_key: str | None = _field(None, "TLS_KEY", "PEM private key.")
    web_port: int = _field(-1, "WEB_PORT", "Browser page + WebSocket bridge port; -1 disables.")


def env_flag(value: str) -> bool:
    """Parse a boolean environment value ("1", "true", "yes", "on")."""
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _convert(value: str, field: dataclasses.Field) -> Any:
    kind = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", str(field.type))
    if kind.startswith("bool"):
        return env_flag(value)
    if kind.startswith("int"):
        return int(value)
    if kind.startswith("float"):
        return float(value)
    return value


def load(cls: type[T], argv: Sequence[str] | None = None,
         environ: Mapping[str, str] | None = None) -> T:
    """Build ``cls`` from defaults, then ``environ``, then ``argv`` (--field-name value)."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    parser = argparse.ArgumentParser(description=cls.__doc__)
    for field in dataclasses.fields(cls):
        env = field.metadata.get("env")
        if env and env in environ and environ[env] != "":
            values[field.name] = _convert(environ[env], field)
        flag = "--" + field.name.replace("_", "-")
        parser.add_argument(flag, dest=field.name, default=None,
                            help=f"{field.metadata.get('help', '')} [env {env}]")
    args = parser.parse_args(list(argv) if argv is not None else [])
    for field in dataclasses.fields(cls):
        raw = getattr(args, field.name)
        if raw is not None:
            values[field.name] = _convert(raw, field)
    return cls(**values)


def _markdown_table() -> str:
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    seen: set[str] = set()
    for cls in (ModelSettings, ServerSettings, VadSettings, AsrSettings, EmotionSettings, GatewaySettings):
        for field in dataclasses.fields(cls):
            env = field.metadata["env"]
            if env in seen or env == "PROJECT_ROOT":
                continue
            seen.add(env)
            rows.append(f"| `{env}` | `{field.default}` | {field.metadata['help']} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(_markdown_table())
