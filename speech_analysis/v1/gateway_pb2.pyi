from speech_analysis.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ChannelMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHANNEL_MODE_UNSPECIFIED: _ClassVar[ChannelMode]
    CHANNEL_MODE_DOWNMIX: _ClassVar[ChannelMode]
    CHANNEL_MODE_SEPARATE: _ClassVar[ChannelMode]
CHANNEL_MODE_UNSPECIFIED: ChannelMode
CHANNEL_MODE_DOWNMIX: ChannelMode
CHANNEL_MODE_SEPARATE: ChannelMode

class StreamConfig(_message.Message):
    __slots__ = ("sample_rate_hz", "encoding", "channels", "mode", "vad_backend", "interim_results", "language", "hotwords", "use_itn", "vad", "speechbrain_emotion", "text_sentiment", "channel_mode", "speaker_labels")
    SAMPLE_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    VAD_BACKEND_FIELD_NUMBER: _ClassVar[int]
    INTERIM_RESULTS_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    HOTWORDS_FIELD_NUMBER: _ClassVar[int]
    USE_ITN_FIELD_NUMBER: _ClassVar[int]
    VAD_FIELD_NUMBER: _ClassVar[int]
    SPEECHBRAIN_EMOTION_FIELD_NUMBER: _ClassVar[int]
    TEXT_SENTIMENT_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_MODE_FIELD_NUMBER: _ClassVar[int]
    SPEAKER_LABELS_FIELD_NUMBER: _ClassVar[int]
    sample_rate_hz: int
    encoding: _common_pb2.AudioEncoding
    channels: int
    mode: _common_pb2.AsrMode
    vad_backend: _common_pb2.VadBackend
    interim_results: bool
    language: str
    hotwords: _containers.RepeatedScalarFieldContainer[str]
    use_itn: bool
    vad: _common_pb2.VadConfig
    speechbrain_emotion: bool
    text_sentiment: bool
    channel_mode: ChannelMode
    speaker_labels: SpeakerLabelConfig
    def __init__(self, sample_rate_hz: _Optional[int] = ..., encoding: _Optional[_Union[_common_pb2.AudioEncoding, str]] = ..., channels: _Optional[int] = ..., mode: _Optional[_Union[_common_pb2.AsrMode, str]] = ..., vad_backend: _Optional[_Union[_common_pb2.VadBackend, str]] = ..., interim_results: _Optional[bool] = ..., language: _Optional[str] = ..., hotwords: _Optional[_Iterable[str]] = ..., use_itn: _Optional[bool] = ..., vad: _Optional[_Union[_common_pb2.VadConfig, _Mapping]] = ..., speechbrain_emotion: _Optional[bool] = ..., text_sentiment: _Optional[bool] = ..., channel_mode: _Optional[_Union[ChannelMode, str]] = ..., speaker_labels: _Optional[_Union[SpeakerLabelConfig, _Mapping]] = ...) -> None: ...

class SpeakerLabelConfig(_message.Message):
    __slots__ = ("enabled", "similarity_threshold", "max_speakers")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MAX_SPEAKERS_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    similarity_threshold: float
    max_speakers: int
    def __init__(self, enabled: _Optional[bool] = ..., similarity_threshold: _Optional[float] = ..., max_speakers: _Optional[int] = ...) -> None: ...

class AnalyzeRequest(_message.Message):
    __slots__ = ("config", "audio")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    config: StreamConfig
    audio: bytes
    def __init__(self, config: _Optional[_Union[StreamConfig, _Mapping]] = ..., audio: _Optional[bytes] = ...) -> None: ...

class AnalyzeFileRequest(_message.Message):
    __slots__ = ("content", "config")
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    content: bytes
    config: StreamConfig
    def __init__(self, content: _Optional[bytes] = ..., config: _Optional[_Union[StreamConfig, _Mapping]] = ...) -> None: ...

class AnalyzeFileResponse(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[AnalyzeResponse]
    def __init__(self, events: _Optional[_Iterable[_Union[AnalyzeResponse, _Mapping]]] = ...) -> None: ...

class SpeechStarted(_message.Message):
    __slots__ = ("segment_id", "start_ms", "channel")
    SEGMENT_ID_FIELD_NUMBER: _ClassVar[int]
    START_MS_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    segment_id: int
    start_ms: int
    channel: int
    def __init__(self, segment_id: _Optional[int] = ..., start_ms: _Optional[int] = ..., channel: _Optional[int] = ...) -> None: ...

class SpeechEnded(_message.Message):
    __slots__ = ("segment_id", "start_ms", "end_ms", "channel")
    SEGMENT_ID_FIELD_NUMBER: _ClassVar[int]
    START_MS_FIELD_NUMBER: _ClassVar[int]
    END_MS_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    segment_id: int
    start_ms: int
    end_ms: int
    channel: int
    def __init__(self, segment_id: _Optional[int] = ..., start_ms: _Optional[int] = ..., end_ms: _Optional[int] = ..., channel: _Optional[int] = ...) -> None: ...

class EmotionResult(_message.Message):
    __slots__ = ("source", "label", "display_name", "confidence", "probabilities")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    source: str
    label: str
    display_name: str
    confidence: float
    probabilities: _containers.RepeatedCompositeFieldContainer[_common_pb2.EmotionScore]
    def __init__(self, source: _Optional[str] = ..., label: _Optional[str] = ..., display_name: _Optional[str] = ..., confidence: _Optional[float] = ..., probabilities: _Optional[_Iterable[_Union[_common_pb2.EmotionScore, _Mapping]]] = ...) -> None: ...

class AudioFeatures(_message.Message):
    __slots__ = ("duration_ms", "loudness_dbfs", "peak_dbfs")
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    LOUDNESS_DBFS_FIELD_NUMBER: _ClassVar[int]
    PEAK_DBFS_FIELD_NUMBER: _ClassVar[int]
    duration_ms: int
    loudness_dbfs: float
    peak_dbfs: float
    def __init__(self, duration_ms: _Optional[int] = ..., loudness_dbfs: _Optional[float] = ..., peak_dbfs: _Optional[float] = ...) -> None: ...

class TextSentiment(_message.Message):
    __slots__ = ("positive_probability", "label")
    POSITIVE_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    positive_probability: float
    label: str
    def __init__(self, positive_probability: _Optional[float] = ..., label: _Optional[str] = ...) -> None: ...

class SegmentResult(_message.Message):
    __slots__ = ("segment_id", "start_ms", "end_ms", "text", "timestamps", "language", "language_display_name", "audio_event", "audio_event_display_name", "emotions", "features", "sentiment", "errors", "random_weights", "channel", "speaker")
    SEGMENT_ID_FIELD_NUMBER: _ClassVar[int]
    START_MS_FIELD_NUMBER: _ClassVar[int]
    END_MS_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMPS_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    AUDIO_EVENT_FIELD_NUMBER: _ClassVar[int]
    AUDIO_EVENT_DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    EMOTIONS_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    SENTIMENT_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    RANDOM_WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    SPEAKER_FIELD_NUMBER: _ClassVar[int]
    segment_id: int
    start_ms: int
    end_ms: int
    text: str
    timestamps: _containers.RepeatedCompositeFieldContainer[_common_pb2.TokenTimestamp]
    language: str
    language_display_name: str
    audio_event: str
    audio_event_display_name: str
    emotions: _containers.RepeatedCompositeFieldContainer[EmotionResult]
    features: AudioFeatures
    sentiment: TextSentiment
    errors: _containers.RepeatedScalarFieldContainer[str]
    random_weights: bool
    channel: int
    speaker: int
    def __init__(self, segment_id: _Optional[int] = ..., start_ms: _Optional[int] = ..., end_ms: _Optional[int] = ..., text: _Optional[str] = ..., timestamps: _Optional[_Iterable[_Union[_common_pb2.TokenTimestamp, _Mapping]]] = ..., language: _Optional[str] = ..., language_display_name: _Optional[str] = ..., audio_event: _Optional[str] = ..., audio_event_display_name: _Optional[str] = ..., emotions: _Optional[_Iterable[_Union[EmotionResult, _Mapping]]] = ..., features: _Optional[_Union[AudioFeatures, _Mapping]] = ..., sentiment: _Optional[_Union[TextSentiment, _Mapping]] = ..., errors: _Optional[_Iterable[str]] = ..., random_weights: _Optional[bool] = ..., channel: _Optional[int] = ..., speaker: _Optional[int] = ...) -> None: ...

class InterimResult(_message.Message):
    __slots__ = ("segment_id", "text", "end_ms", "channel")
    SEGMENT_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    END_MS_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    segment_id: int
    text: str
    end_ms: int
    channel: int
    def __init__(self, segment_id: _Optional[int] = ..., text: _Optional[str] = ..., end_ms: _Optional[int] = ..., channel: _Optional[int] = ...) -> None: ...

class EmotionShare(_message.Message):
    __slots__ = ("label", "display_name", "share", "duration_ms", "mean_probability")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    SHARE_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    MEAN_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    label: str
    display_name: str
    share: float
    duration_ms: int
    mean_probability: float
    def __init__(self, label: _Optional[str] = ..., display_name: _Optional[str] = ..., share: _Optional[float] = ..., duration_ms: _Optional[int] = ..., mean_probability: _Optional[float] = ...) -> None: ...

class ChannelSummary(_message.Message):
    __slots__ = ("channel", "transcript", "segment_count", "talk_time_ms", "talk_time_share", "dominant_emotion", "dominant_emotion_display_name", "emotion_distribution", "sentiment")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    TRANSCRIPT_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    TALK_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    TALK_TIME_SHARE_FIELD_NUMBER: _ClassVar[int]
    DOMINANT_EMOTION_FIELD_NUMBER: _ClassVar[int]
    DOMINANT_EMOTION_DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    EMOTION_DISTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    SENTIMENT_FIELD_NUMBER: _ClassVar[int]
    channel: int
    transcript: str
    segment_count: int
    talk_time_ms: int
    talk_time_share: float
    dominant_emotion: str
    dominant_emotion_display_name: str
    emotion_distribution: _containers.RepeatedCompositeFieldContainer[EmotionShare]
    sentiment: TextSentiment
    def __init__(self, channel: _Optional[int] = ..., transcript: _Optional[str] = ..., segment_count: _Optional[int] = ..., talk_time_ms: _Optional[int] = ..., talk_time_share: _Optional[float] = ..., dominant_emotion: _Optional[str] = ..., dominant_emotion_display_name: _Optional[str] = ..., emotion_distribution: _Optional[_Iterable[_Union[EmotionShare, _Mapping]]] = ..., sentiment: _Optional[_Union[TextSentiment, _Mapping]] = ...) -> None: ...

class ConversationSummary(_message.Message):
    __slots__ = ("overlap_ms", "silence_ms", "silence_share", "turn_count")
    OVERLAP_MS_FIELD_NUMBER: _ClassVar[int]
    SILENCE_MS_FIELD_NUMBER: _ClassVar[int]
    SILENCE_SHARE_FIELD_NUMBER: _ClassVar[int]
    TURN_COUNT_FIELD_NUMBER: _ClassVar[int]
    overlap_ms: int
    silence_ms: int
    silence_share: float
    turn_count: int
    def __init__(self, overlap_ms: _Optional[int] = ..., silence_ms: _Optional[int] = ..., silence_share: _Optional[float] = ..., turn_count: _Optional[int] = ...) -> None: ...

class SpeakerSummary(_message.Message):
    __slots__ = ("speaker", "transcript", "segment_count", "talk_time_ms", "talk_time_share", "dominant_emotion", "dominant_emotion_display_name", "emotion_distribution", "sentiment")
    SPEAKER_FIELD_NUMBER: _ClassVar[int]
    TRANSCRIPT_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    TALK_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    TALK_TIME_SHARE_FIELD_NUMBER: _ClassVar[int]
    DOMINANT_EMOTION_FIELD_NUMBER: _ClassVar[int]
    DOMINANT_EMOTION_DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    EMOTION_DISTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    SENTIMENT_FIELD_NUMBER: _ClassVar[int]
    speaker: int
    transcript: str
    segment_count: int
    talk_time_ms: int
    talk_time_share: float
    dominant_emotion: str
    dominant_emotion_display_name: str
    emotion_distribution: _containers.RepeatedCompositeFieldContainer[EmotionShare]
    sentiment: TextSentiment
    def __init__(self, speaker: _Optional[int] = ..., transcript: _Optional[str] = ..., segment_count: _Optional[int] = ..., talk_time_ms: _Optional[int] = ..., talk_time_share: _Optional[float] = ..., dominant_emotion: _Optional[str] = ..., dominant_emotion_display_name: _Optional[str] = ..., emotion_distribution: _Optional[_Iterable[_Union[EmotionShare, _Mapping]]] = ..., sentiment: _Optional[_Union[TextSentiment, _Mapping]] = ...) -> None: ...

class SessionSummary(_message.Message):
    __slots__ = ("transcript", "segment_count", "audio_duration_ms", "speech_duration_ms", "silence_duration_ms", "dominant_emotion", "dominant_emotion_display_name", "emotion_distribution", "sentiment", "random_weights", "channels", "conversation", "speakers")
    TRANSCRIPT_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    AUDIO_DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    SPEECH_DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    SILENCE_DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    DOMINANT_EMOTION_FIELD_NUMBER: _ClassVar[int]
    DOMINANT_EMOTION_DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    EMOTION_DISTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    SENTIMENT_FIELD_NUMBER: _ClassVar[int]
    RANDOM_WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_FIELD_NUMBER: _ClassVar[int]
    SPEAKERS_FIELD_NUMBER: _ClassVar[int]
    transcript: str
    segment_count: int
    audio_duration_ms: int
    speech_duration_ms: int
    silence_duration_ms: int
    dominant_emotion: str
    dominant_emotion_display_name: str
    emotion_distribution: _containers.RepeatedCompositeFieldContainer[EmotionShare]
    sentiment: TextSentiment
    random_weights: bool
    channels: _containers.RepeatedCompositeFieldContainer[ChannelSummary]
    conversation: ConversationSummary
    speakers: _containers.RepeatedCompositeFieldContainer[SpeakerSummary]
    def __init__(self, transcript: _Optional[str] = ..., segment_count: _Optional[int] = ..., audio_duration_ms: _Optional[int] = ..., speech_duration_ms: _Optional[int] = ..., silence_duration_ms: _Optional[int] = ..., dominant_emotion: _Optional[str] = ..., dominant_emotion_display_name: _Optional[str] = ..., emotion_distribution: _Optional[_Iterable[_Union[EmotionShare, _Mapping]]] = ..., sentiment: _Optional[_Union[TextSentiment, _Mapping]] = ..., random_weights: _Optional[bool] = ..., channels: _Optional[_Iterable[_Union[ChannelSummary, _Mapping]]] = ..., conversation: _Optional[_Union[ConversationSummary, _Mapping]] = ..., speakers: _Optional[_Iterable[_Union[SpeakerSummary, _Mapping]]] = ...) -> None: ...

class ErrorEvent(_message.Message):
    __slots__ = ("code", "message", "segment_id", "channel")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    segment_id: int
    channel: int
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ..., segment_id: _Optional[int] = ..., channel: _Optional[int] = ...) -> None: ...

class AnalyzeResponse(_message.Message):
    __slots__ = ("session_id", "speech_started", "speech_ended", "segment_result", "interim_result", "summary", "error")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SPEECH_STARTED_FIELD_NUMBER: _ClassVar[int]
    SPEECH_ENDED_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_RESULT_FIELD_NUMBER: _ClassVar[int]
    INTERIM_RESULT_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    speech_started: SpeechStarted
    speech_ended: SpeechEnded
    segment_result: SegmentResult
    interim_result: InterimResult
    summary: SessionSummary
    error: ErrorEvent
    def __init__(self, session_id: _Optional[str] = ..., speech_started: _Optional[_Union[SpeechStarted, _Mapping]] = ..., speech_ended: _Optional[_Union[SpeechEnded, _Mapping]] = ..., segment_result: _Optional[_Union[SegmentResult, _Mapping]] = ..., interim_result: _Optional[_Union[InterimResult, _Mapping]] = ..., summary: _Optional[_Union[SessionSummary, _Mapping]] = ..., error: _Optional[_Union[ErrorEvent, _Mapping]] = ...) -> None: ...
