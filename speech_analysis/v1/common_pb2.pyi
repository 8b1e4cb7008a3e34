from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AudioEncoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AUDIO_ENCODING_UNSPECIFIED: _ClassVar[AudioEncoding]
    AUDIO_ENCODING_PCM16LE: _ClassVar[AudioEncoding]
    AUDIO_ENCODING_FLOAT32LE: _ClassVar[AudioEncoding]

class AsrMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ASR_MODE_UNSPECIFIED: _ClassVar[AsrMode]
    ASR_MODE_PARAFORMER: _ClassVar[AsrMode]
    ASR_MODE_SENSEVOICE: _ClassVar[AsrMode]

class VadBackend(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VAD_BACKEND_UNSPECIFIED: _ClassVar[VadBackend]
    VAD_BACKEND_SILERO: _ClassVar[VadBackend]
    VAD_BACKEND_FSMN: _ClassVar[VadBackend]
AUDIO_ENCODING_UNSPECIFIED: AudioEncoding
AUDIO_ENCODING_PCM16LE: AudioEncoding
AUDIO_ENCODING_FLOAT32LE: AudioEncoding
ASR_MODE_UNSPECIFIED: AsrMode
ASR_MODE_PARAFORMER: AsrMode
ASR_MODE_SENSEVOICE: AsrMode
VAD_BACKEND_UNSPECIFIED: VadBackend
VAD_BACKEND_SILERO: VadBackend
VAD_BACKEND_FSMN: VadBackend

class VadConfig(_message.Message):
    __slots__ = ("backend", "threshold", "min_speech_duration_ms", "min_silence_duration_ms", "speech_pad_ms", "max_speech_duration_s")
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MIN_SPEECH_DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    MIN_SILENCE_DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    SPEECH_PAD_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_SPEECH_DURATION_S_FIELD_NUMBER: _ClassVar[int]
    backend: VadBackend
    threshold: float
    min_speech_duration_ms: int
    min_silence_duration_ms: int
    speech_pad_ms: int
    max_speech_duration_s: float
    def __init__(self, backend: _Optional[_Union[VadBackend, str]] = ..., threshold: _Optional[float] = ..., min_speech_duration_ms: _Optional[int] = ..., min_silence_duration_ms: _Optional[int] = ..., speech_pad_ms: _Optional[int] = ..., max_speech_duration_s: _Optional[float] = ...) -> None: ...

class TokenTimestamp(_message.Message):
    __slots__ = ("token", "start_ms", "end_ms", "stream_start_ms", "stream_end_ms")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    START_MS_FIELD_NUMBER: _ClassVar[int]
    END_MS_FIELD_NUMBER: _ClassVar[int]
    STREAM_START_MS_FIELD_NUMBER: _ClassVar[int]
    STREAM_END_MS_FIELD_NUMBER: _ClassVar[int]
    token: str
    start_ms: int
    end_ms: int
    stream_start_ms: int
    stream_end_ms: int
    def __init__(self, token: _Optional[str] = ..., start_ms: _Optional[int] = ..., end_ms: _Optional[int] = ..., stream_start_ms: _Optional[int] = ..., stream_end_ms: _Optional[int] = ...) -> None: ...

class EmotionScore(_message.Message):
    __slots__ = ("label", "display_name", "probability")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    label: str
    display_name: str
    probability: float
    def __init__(self, label: _Optional[str] = ..., display_name: _Optional[str] = ..., probability: _Optional[float] = ...) -> None: ...
