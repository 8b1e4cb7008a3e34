from speech_analysis.v1 import common_pb2 as _common_pb2
from speech_analysis.worker.v1 import audio_pb2 as _audio_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StreamVadRequest(_message.Message):
    __slots__ = ("config", "audio")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    config: _common_pb2.VadConfig
    audio: _audio_pb2.AudioChunk
    def __init__(self, config: _Optional[_Union[_common_pb2.VadConfig, _Mapping]] = ..., audio: _Optional[_Union[_audio_pb2.AudioChunk, _Mapping]] = ...) -> None: ...

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

class StreamVadResponse(_message.Message):
    __slots__ = ("speech_started", "speech_ended", "progress")
    SPEECH_STARTED_FIELD_NUMBER: _ClassVar[int]
    SPEECH_ENDED_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    speech_started: SpeechStart
    speech_ended: SpeechEnd
    progress: Progress
    def __init__(self, speech_started: _Optional[_Union[SpeechStart, _Mapping]] = ..., speech_ended: _Optional[_Union[SpeechEnd, _Mapping]] = ..., progress: _Optional[_Union[Progress, _Mapping]] = ...) -> None: ...
