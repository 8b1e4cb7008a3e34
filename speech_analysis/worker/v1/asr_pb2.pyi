from speech_analysis.v1 import common_pb2 as _common_pb2
from speech_analysis.worker.v1 import audio_pb2 as _audio_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TranscribeRequest(_message.Message):
    __slots__ = ("audio", "mode", "segment_start_ms", "hotwords", "language", "use_itn")
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_START_MS_FIELD_NUMBER: _ClassVar[int]
    HOTWORDS_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    USE_ITN_FIELD_NUMBER: _ClassVar[int]
    audio: _audio_pb2.AudioChunk
    mode: _common_pb2.AsrMode
    segment_start_ms: int
    hotwords: _containers.RepeatedScalarFieldContainer[str]
    language: str
    use_itn: bool
    def __init__(self, audio: _Optional[_Union[_audio_pb2.AudioChunk, _Mapping]] = ..., mode: _Optional[_Union[_common_pb2.AsrMode, str]] = ..., segment_start_ms: _Optional[int] = ..., hotwords: _Optional[_Iterable[str]] = ..., language: _Optional[str] = ..., use_itn: _Optional[bool] = ...) -> None: ...

class TranscribeResponse(_message.Message):
    __slots__ = ("text", "timestamps", "mode", "language", "language_display_name", "emotion", "audio_event", "audio_event_display_name", "model_info", "compute_ms")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMPS_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    EMOTION_FIELD_NUMBER: _ClassVar[int]
    AUDIO_EVENT_FIELD_NUMBER: _ClassVar[int]
    AUDIO_EVENT_DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_INFO_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_MS_FIELD_NUMBER: _ClassVar[int]
    text: str
    timestamps: _containers.RepeatedCompositeFieldContainer[_common_pb2.TokenTimestamp]
    mode: _common_pb2.AsrMode
    language: str
    language_display_name: str
    emotion: _common_pb2.EmotionScore
    audio_event: str
    audio_event_display_name: str
    model_info: _audio_pb2.ModelInfo
    compute_ms: float
    def __init__(self, text: _Optional[str] = ..., timestamps: _Optional[_Iterable[_Union[_common_pb2.TokenTimestamp, _Mapping]]] = ..., mode: _Optional[_Union[_common_pb2.AsrMode, str]] = ..., language: _Optional[str] = ..., language_display_name: _Optional[str] = ..., emotion: _Optional[_Union[_common_pb2.EmotionScore, _Mapping]] = ..., audio_event: _Optional[str] = ..., audio_event_display_name: _Optional[str] = ..., model_info: _Optional[_Union[_audio_pb2.ModelInfo, _Mapping]] = ..., compute_ms: _Optional[float] = ...) -> None: ...
