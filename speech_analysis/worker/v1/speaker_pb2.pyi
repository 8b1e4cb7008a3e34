from speech_analysis.worker.v1 import audio_pb2 as _audio_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EmbedRequest(_message.Message):
    __slots__ = ("audio",)
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    audio: _audio_pb2.AudioChunk
    def __init__(self, audio: _Optional[_Union[_audio_pb2.AudioChunk, _Mapping]] = ...) -> None: ...

class EmbedResponse(_message.Message):
    __slots__ = ("embedding", "audio_ms", "model_info", "compute_ms")
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    AUDIO_MS_FIELD_NUMBER: _ClassVar[int]
    MODEL_INFO_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_MS_FIELD_NUMBER: _ClassVar[int]
    embedding: _containers.RepeatedScalarFieldContainer[float]
    audio_ms: int
    model_info: _audio_pb2.ModelInfo
    compute_ms: float
    def __init__(self, embedding: _Optional[_Iterable[float]] = ..., audio_ms: _Optional[int] = ..., model_info: _Optional[_Union[_audio_pb2.ModelInfo, _Mapping]] = ..., compute_ms: _Optional[float] = ...) -> None: ...
