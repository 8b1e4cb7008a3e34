from protos.v1 import audio_pb2 as _audio_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class VadBackend(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VAD_BACKEND_UNSPECIFIED: _ClassVar[VadBackend]
    SILERO: _ClassVar[VadBackend]
    FSMN: _ClassVar[VadBackend]
VAD_BACKEND_UNSPECIFIED: VadBackend
SILERO: VadBackend
FSMN: VadBackend

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

class VadRequest(_message.Message):
    __slots__ = ("config", "audio")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    config: VadConfig
    audio: _audio_pb2.AudioChunk
    def __init__(self, config: _Optional[_Union[VadConfig, _Mapping]] = ..., audio: _Optional[_Union[_audio_pb2.AudioChunk, _Mapping]] = ...) -> None: ...

class SpeechStart(_message.Message):
    __slots__ = ("segment_id", "start_ms")
    SEGMENT_ID_FIELD_NUMBER: _ClassVar[int]
    START_MS_FIELD_NUMBER: _ClassVar[int]
    segment_id: int
    start_ms: int
    def __init__(self, segment_id: _Optional[int] = ..., start_ms: _Optional[int] = ...) -> None: ...

class SpeechEnd(_message.Message):
    __slots__ = ("segment_id", "start_ms", "end_ms")
    SEGMENT_ID_FIELD_NUMBER: _ClassVar[int]
    START_MS_FIELD_NUMBER: _ClassVar[int]
    END_MS_FIELD_NUMBER: _ClassVar[int]
    segment_id: int
    start_ms: int
    end_ms: int
    def __init__(self, segment_id: _Optional[int] = ..., start_ms: _Optional[int] = ..., end_ms: _Optional[int] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("processed_ms", "keep_from_ms")
    PROCESSED_MS_FIELD_NUMBER: _ClassVar[int]
    KEEP_FROM_MS_FIELD_NUMBER: _ClassVar[int]
    processed_ms: int
    keep_from_ms: int
    def __init__(self, processed_ms: _Optional[int] = ..., keep_from_ms: _Optional[int] = ...) -> None: ...

class VadEvent(_message.Message):
    __slots__ = ("speech_started", "speech_ended", "progress")
    SPEECH_STARTED_FIELD_NUMBER: _ClassVar[int]
    SPEECH_ENDED_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    speech_started: SpeechStart
    speech_ended: SpeechEnd
    progress: Progress
    def __init__(self, speech_started: _Optional[_Union[SpeechStart, _Mapping]] = ..., speech_ended: _Optional[_Union[SpeechEnd, _Mapping]] = ..., progress: _Optional[_Union[Progress, _Mapping]] = ...) -> None: ...
