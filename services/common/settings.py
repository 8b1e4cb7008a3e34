"""All configuration of every process, in one place.

Each process has a frozen settings dataclass. Values come from, in order of
precedence: command-line arguments, environment variables, documented
defaults. This is the only module that reads ``os.environ`` for configuration;
everything else receives settings objects.

Usage::

    settings = load(VadSettings, argv)        # in a server's main()

Every field's metadata names its environment variable and documents it; the
README table is generated from the same metadata (``python -m
services.common.settings``). A value that does not parse (``ASR_MAX_BATCH=four``,
``ASR_INT8=ture``, ``ASR_MODE=fast``) stops the process at once with a message
naming the variable, its flag and the accepted values (exit status 2).

A server that needs several settings classes parses them together, so every
flag of each is accepted::

    settings, models = load_many(AsrSettings, ModelSettings, argv=argv)
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path
from typing import Any, Mapping, Sequence, TypeVar

from services.common.modes import MODE_NAMES

__all__ = [
    "PROJECT_ROOT",
    "ServerSettings",
    "VadSettings",
    "AsrSettings",
    "EmotionSettings",
    "SpeakerSettings",
    "GatewaySettings",
    "ModelSettings",
    "load",
    "load_many",
    "env_flag",
    "split_list",
]

PROJECT_ROOT = Path(__file__).resolve().parents[2]

T = TypeVar("T")


def _field(default: Any, env: str, help: str, *, choices: Sequence[str] | None = None,
           minimum: float | None = None, list_of: Sequence[str] | None = None) -> Any:
    """A setting: default, environment variable, help; optionally its accepted values.

    ``list_of``: the value is a comma-separated, non-empty list of these words
    (kept as a normalised string, e.g. ``"silero,fsmn"``; see :func:`split_list`).
    """
    metadata: dict[str, Any] = {"env": env, "help": help}
    if choices is not None:
        metadata["choices"] = tuple(choices)
    if list_of is not None:
        metadata["list_of"] = tuple(list_of)
    if minimum is not None:
        metadata["minimum"] = minimum
    return dataclasses.field(default=default, metadata=metadata)


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
    grace_s: float = _field(5.0, "SHUTDOWN_GRACE_S", "Seconds in-flight calls get to finish on SIGTERM.",
                           minimum=0)
    max_message_bytes: int = _field(8 * 1024 * 1024, "MAX_MESSAGE_BYTES",
                                    "Largest gRPC message between the processes, and largest audio "
                                    "message a client may send.", minimum=1024)
    max_connection_age_s: float = _field(300.0, "MAX_CONNECTION_AGE_S",
                                         "Connections are recycled after this long so clients re-resolve "
                                         "DNS and reach new replicas; streams in flight are never cut.",
                                         minimum=0.1)
    torch_threads: int = _field(2, "TORCH_THREADS", "torch intra-op threads for model inference.")
    log_level: str = _field("INFO", "LOG_LEVEL", "Python logging level.",
                            choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"))


@dataclasses.dataclass(frozen=True)
class VadSettings(ServerSettings):
    port: int = _field(50051, "VAD_PORT", "VAD worker gRPC port.")
    default_backend: str = _field("silero", "VAD_BACKEND", "Default VAD backend: silero or fsmn "
                                  "(must be one of VAD_BACKENDS).", choices=("silero", "fsmn"))
    backends: str = _field("silero", "VAD_BACKENDS",
                           "Comma-separated VAD backends the worker loads; a stream asking for another "
                           "is refused with FAILED_PRECONDITION. silero runs on onnxruntime without "
                           "torch (~115 MiB resident); adding fsmn loads torch + FunASR (~400 MiB).",
                           list_of=("silero", "fsmn"))
    max_streams: int = _field(64, "VAD_MAX_STREAMS", "Concurrent VAD streams before RESOURCE_EXHAUSTED.")


@dataclasses.dataclass(frozen=True)
class AsrSettings(ServerSettings):
    port: int = _field(50052, "ASR_PORT", "ASR worker gRPC port.")
    mode: str = _field("paraformer", "ASR_MODE", "Models to serve: paraformer, sensevoice or both.",
                      choices=(*MODE_NAMES, "both"))
    max_batch: int = _field(4, "ASR_MAX_BATCH", "Most segments decoded in one model call.",
                            minimum=1)
    batch_wait_ms: int = _field(10, "ASR_BATCH_WAIT_MS", "How long to wait for more segments to batch.")
    max_queue: int = _field(16, "ASR_MAX_QUEUE", "Queued segments before RESOURCE_EXHAUSTED.")
    max_segment_s: float = _field(30.0, "ASR_MAX_SEGMENT_S", "Longer segments are split by FSMN-VAD (paraformer).")
    quantize_int8: bool = _field(False, "ASR_INT8", "Dynamic int8 quantization of linear layers (about half "
                                 "the memory, 1.7-2.7x faster; each request is then its own model call).")
    sensevoice_timestamps: bool = _field(False, "ASR_SENSEVOICE_TIMESTAMPS",
                                         "Token timestamps in SenseVoice mode (CTC forced alignment, "
                                         "about 10% more compute and no batching gain).")
    lean_loading: bool = _field(True, "ASR_LEAN_LOADING",
                                "Memory-map checkpoints while loading and skip the random init they replace "
                                "(lower peak/resident memory: int8 load peak 982 instead of 1540 MiB); "
                                "0 falls back to FunASR's own loader.")


@dataclasses.dataclass(frozen=True)
class EmotionSettings(ServerSettings):
    port: int = _field(50053, "EMOTION_PORT", "Emotion worker gRPC port.")
    model: str = _field("speechbrain", "EMOTION_MODEL",
                        "Emotion model to serve: speechbrain (wav2vec2 IEMOCAP, 4 classes, default) or "
                        "emotion2vec (emotion2vec+ base, 9 classes, from MODEL_CACHE_DIR).",
                        choices=("speechbrain", "emotion2vec"))
    lazy_load: bool = _field(False, "EMOTION_LAZY_LOAD", "Load the model on the first request, not at start.")
    max_batch: int = _field(4, "EMOTION_MAX_BATCH", "Most segments classified in one model call.",
                            minimum=1)
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
    max_audio_s: float = _field(0.0, "EMOTION_MAX_AUDIO_S",
                                "0: classify all of a segment. N: a longer segment is classified on "
                                "its middle N seconds only (bounds the compute per segment; the "
                                "small-host profile uses 6).", minimum=0)
    runtime: str = _field("torch", "EMOTION_RUNTIME",
                          "torch: SpeechBrain on torch. onnx: the model exported by "
                          "scripts/export_emotion_onnx.py on onnxruntime, no torch in the worker "
                          "(with EMOTION_INT8=1: 212 instead of 670 MiB resident after load, measured).",
                          choices=("torch", "onnx"))
    onnx_dir: str | None = _field(None, "EMOTION_ONNX_DIR",
                                  "Where EMOTION_RUNTIME=onnx finds the export. Unset: the model "
                                  "directory's onnx/ subdirectory.")
    quantize_int8: bool = _field(False, "EMOTION_INT8",
                                 "Dynamic int8 quantization of linear layers (less memory, faster; "
                                 "probabilities move slightly). With EMOTION_RUNTIME=onnx: the int8 "
                                 "export.")


@dataclasses.dataclass(frozen=True)
class SpeakerSettings(ServerSettings):
    port: int = _field(50054, "SPEAKER_PORT", "Speaker worker gRPC port.")
    max_batch: int = _field(8, "SPEAKER_MAX_BATCH", "Most segments embedded in one model call.", minimum=1)
    batch_wait_ms: int = _field(10, "SPEAKER_BATCH_WAIT_MS", "How long to wait for more segments to batch.")
    max_queue: int = _field(32, "SPEAKER_MAX_QUEUE", "Queued segments before RESOURCE_EXHAUSTED.")
    min_segment_ms: int = _field(200, "SPEAKER_MIN_SEGMENT_MS",
                                 "Shorter segments are refused with INVALID_ARGUMENT (too short to "
                                 "say anything about a voice).", minimum=45)  # CAM++ needs 3 fbank frames
    max_audio_s: float = _field(10.0, "SPEAKER_MAX_AUDIO_S",
                                "A longer segment is embedded from its middle N seconds only (bounds "
                                "the compute and memory per segment).", minimum=1)
    runtime: str = _field("torch", "SPEAKER_RUNTIME",
                          "torch: CAM++ through FunASR on torch. onnx: the model exported by "
                          "scripts/export_speaker_onnx.py on onnxruntime, fbank by kaldi-native-fbank, "
                          "no torch or FunASR in the worker (130 instead of 311 MiB resident after "
                          "load, about half the CPU, measured).",
                          choices=("torch", "onnx"))
    onnx_dir: str | None = _field(None, "SPEAKER_ONNX_DIR",
                                  "Where SPEAKER_RUNTIME=onnx finds the export. Unset: the CAM++ model "
                                  "directory's onnx/ subdirectory.")


@dataclasses.dataclass(frozen=True)
class GatewaySettings(ServerSettings):
    host: str = _field("127.0.0.1", "GATEWAY_HOST", "Gateway bind address (0.0.0.0 to serve other hosts).")
    port: int = _field(50050, "GATEWAY_PORT", "Public gRPC port.")
    vad_address: str = _field("127.0.0.1:50051", "VAD_ADDRESS", "VAD worker target (dns:///name:port for replicas).")
    asr_address: str = _field("127.0.0.1:50052", "ASR_ADDRESS", "ASR worker target.")
    emotion_address: str = _field("127.0.0.1:50053", "EMOTION_ADDRESS", "Emotion worker target.")
    speaker_address: str | None = _field(None, "SPEAKER_ADDRESS",
                                         "Speaker worker target (e.g. 127.0.0.1:50054). Unset: no speaker "
                                         "labels; a stream asking for them gets FAILED_PRECONDITION.")
    default_mode: str = _field("paraformer", "DEFAULT_MODE", "Mode used when a stream does not name one.",
                              choices=MODE_NAMES)
    max_sessions: int = _field(16, "MAX_SESSIONS", "Concurrent Analyze streams before RESOURCE_EXHAUSTED.",
                              minimum=1)
    max_session_s: float = _field(4 * 3600.0, "MAX_SESSION_S", "Longest audio one stream may send, in seconds.")
    idle_timeout_s: float = _field(30.0, "IDLE_TIMEOUT_S",
                                   "A stream that sends nothing (not even its config) for this long is "
                                   "ended with OUT_OF_RANGE and frees its slot.", minimum=0.1)
    max_file_bytes: int = _field(8 * 1024 * 1024, "MAX_FILE_BYTES",
                                 "Largest AnalyzeFile upload; larger recordings stream through Analyze.",
                                 minimum=1)
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
    web_port: int = _field(-1, "WEB_PORT", "Browser page + WebSocket bridge port; -1 disables. "
                           "Served over HTTPS/WSS when TLS_CERT/TLS_KEY are set.")
    web_allowed_origins: str = _field("", "WEB_ALLOWED_ORIGINS",
                                      "Comma-separated extra Origins (e.g. https://app.example.com) whose "
                                      "pages may open the WebSocket; the page's own origin is always "
                                      "allowed, other sites never by default; * allows any.")


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class SettingError(ValueError):
    """A setting's value cannot be used; the message names the variable and the accepted values."""


def env_flag(value: str) -> bool:
    """Parse a boolean value: 1/true/yes/on or 0/false/no/off (any case); else ValueError."""
    word = value.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(f"{value!r} is not a boolean")


def split_list(value: str) -> tuple[str, ...]:
    """The words of a comma-separated list setting (``"silero, fsmn"`` -> ``("silero", "fsmn")``)."""
    return tuple(word.strip() for word in value.split(",") if word.strip())


def _kind(field: dataclasses.Field) -> str:
    kind = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", str(field.type))
    return kind.split("|")[0].strip()


def _source(field: dataclasses.Field) -> str:
    return f"{field.metadata['env']} (--{field.name.replace('_', '-')})"


def _convert(value: str, field: dataclasses.Field) -> Any:
    """``value`` as the field's type, or SettingError naming the variable and what it accepts."""
    kind = _kind(field)
    text = value.strip()
    try:
        if kind == "bool":
            converted: Any = env_flag(text)
        elif kind == "int":
            converted = int(text)
        elif kind == "float":
            converted = float(text)
            if converted != converted or converted in (float("inf"), float("-inf")):
                raise ValueError("not finite")
        else:
            converted = value
    except ValueError:
        accepted = {"bool": "1/true/yes/on or 0/false/no/off", "int": "an integer",
                    "float": "a number"}[kind]
        raise SettingError(f"{_source(field)}={value!r} is invalid: expected {accepted}") from None
    list_of = field.metadata.get("list_of")
    if list_of is not None:
        words = [word.lower() for word in split_list(text)]
        unknown = [word for word in words if word not in list_of]
        if not words or unknown:
            raise SettingError(f"{_source(field)}={value!r} is invalid: expected a comma-separated list "
                               f"of {', '.join(list_of)}")
        converted = ",".join(dict.fromkeys(words))
    choices = field.metadata.get("choices")
    if choices is not None:
        lowered = {c.lower(): c for c in choices}
        if text.lower() not in lowered:
            raise SettingError(f"{_source(field)}={value!r} is invalid: expected one of "
                               f"{', '.join(choices)}")
        converted = lowered[text.lower()]
    minimum = field.metadata.get("minimum")
    if minimum is not None and converted < minimum:
        raise SettingError(f"{_source(field)}={value!r} is invalid: expected at least {minimum}")
    return converted


def load_many(*classes: type, argv: Sequence[str] | None = None,
              environ: Mapping[str, str] | None = None) -> tuple:
    """Build each of ``classes`` from defaults, then ``environ``, then ``argv`` (--field-name value).

    One parser holds the flags of every class, so a server accepts e.g. both
    ``--port`` and ``--model-cache-dir``. An invalid value exits with status 2
    and a message naming the variable, its flag and the accepted values.
    """
    environ = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(description=classes[0].__doc__)
    fields: dict[str, dataclasses.Field] = {}
    for cls in classes:
        for field in dataclasses.fields(cls):
            if field.name in fields:
                continue
            fields[field.name] = field
            env = field.metadata.get("env")
            choices = field.metadata.get("choices")
            accepted = f" One of: {', '.join(choices)}." if choices else ""
            parser.add_argument("--" + field.name.replace("_", "-"), dest=field.name, default=None,
                                # argparse %-formats help texts ("10% more compute" broke --help)
                                help=f"{field.metadata.get('help', '')}{accepted} [env {env}]".replace("%", "%%"))
    args = parser.parse_args(list(argv) if argv is not None else [])
    built = []
    for cls in classes:
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            env = field.metadata.get("env")
            raw = getattr(args, field.name)
            if raw is None and env and environ.get(env, "") != "":
                raw = environ[env]
            if raw is None:
                continue
            try:
                values[field.name] = _convert(raw, field)
            except SettingError as exc:
                parser.error(str(exc))
        built.append(cls(**values))
    return tuple(built)


def load(cls: type[T], argv: Sequence[str] | None = None,
         environ: Mapping[str, str] | None = None) -> T:
    """Build ``cls`` from defaults, then ``environ``, then ``argv`` (--field-name value)."""
    return load_many(cls, argv=argv, environ=environ)[0]


def _markdown_table() -> str:
    rows = ["| variable | flag | default | meaning |", "|---|---|---|---|"]
    seen: set[str] = set()
    for cls in (ModelSettings, ServerSettings, VadSettings, AsrSettings, EmotionSettings, SpeakerSettings,
                GatewaySettings):
        for field in dataclasses.fields(cls):
            env = field.metadata["env"]
            if env in seen:
                continue
            seen.add(env)
            default = "<project directory>" if env == "PROJECT_ROOT" else field.default
            choices = field.metadata.get("choices")
            accepted = f" One of: {', '.join(choices)}." if choices else ""
            if field.metadata.get("list_of"):
                accepted = f" Any of: {', '.join(field.metadata['list_of'])}."
            flag = "--" + field.name.replace("_", "-")
            rows.append(f"| `{env}` | `{flag}` | `{default}` | {field.metadata['help']}{accepted} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(_markdown_table())
