from speech_analysis.v1 import common_pb2 as _common_pb2
from speech_analysis.worker.v1 import audio_pb2 as _audio_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ClassifyRequest(_message.Message):
    __slots__ = ("audio",)
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    audio: _audio_pb2.AudioChunk
    def __init__(self, audio: _Optional[_Union[_audio_pb2.AudioChunk, _Mapping]] = ...) -> None: ...

class ClassifyResponse(_message.Message):
    __slots__ = ("label", "display_name", "confidence", "probabilities", "windows", "model_info", "compute_ms")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    WINDOWS_FIELD_NUMBER: _ClassVar[int]
    MODEL_INFO_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_MS_FIELD_NUMBER: _ClassVar[int]
    label: str
    display_name: str
    confidence: float
    probabilities: _containers.RepeatedCompositeFieldContainer[_common_pb2.EmotionScore]
    windows: int
    model_info: _audio_pb2.ModelInfo
    compute_ms: float
    def __init__(self, label: _Optional[str] = ..., display_name: _Optional[str] = ..., confidence: _Optional[float] = ..., probabilities: _Optional[_Iterable[_Union[_common_pb2.EmotionScore, _Mapping]]] = ..., windows: _Optional[int] = ..., model_info: _Optional[_Union[_audio_pb2.ModelInfo, _Mapping]] = ..., compute_ms: _Optional[float] = ...) -> None: ...
