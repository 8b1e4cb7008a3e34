from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class AudioChunk(_message.Message):
    __slots__ = ("samples_f32le",)
    SAMPLES_F32LE_FIELD_NUMBER: _ClassVar[int]
    samples_f32le: bytes
    def __init__(self, samples_f32le: _Optional[bytes] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("models", "random_weights")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    RANDOM_WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedScalarFieldContainer[str]
    random_weights: bool
    def __init__(self, models: _Optional[_Iterable[str]] = ..., random_weights: _Optional[bool] = ...) -> None: ...
