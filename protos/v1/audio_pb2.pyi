from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class AudioEncoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AUDIO_ENCODING_UNSPECIFIED: _ClassVar[AudioEncoding]
    PCM16LE: _ClassVar[AudioEncoding]
    FLOAT32LE: _ClassVar[AudioEncoding]
AUDIO_ENCODING_UNSPECIFIED: AudioEncoding
PCM16LE: AudioEncoding
FLOAT32LE: AudioEncoding

class AudioChunk(_message.Message):
    __slots__ = ("samples_f32le",)
    SAMPLES_F32LE_FIELD_NUMBER: _ClassVar[int]
    samples_f32le: bytes
    def __init__(self, samples_f32le: _Optional[bytes] = ...) -> None: ...

class EmotionScore(_message.Message):
    __slots__ = ("label", "display_name", "probability")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    label: str
    display_name: str
    probability: float
    def __init__(self, label: _Optional[str] = ..., display_name: _Optional[str] = ..., probability: _Optional[float] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("models", "random_weights")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    RANDOM_WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedScalarFieldContainer[str]
    random_weights: bool
    def __init__(self, models: _Optional[_Iterable[str]] = ..., random_weights: _Optional[bool] = ...) -> None: ...
