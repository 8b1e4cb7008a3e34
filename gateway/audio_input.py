"""Client audio at the edge: validate the stream config, convert once to 16 kHz mono float32.

The gateway must stay light (no torch), so conversion uses numpy and
python-soxr's streaming resampler, which keeps its filter state across chunks:
resampling a stream chunk by chunk gives the same samples as resampling it
whole, whatever the chunk sizes.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import soundfile
import soxr

from speech_analysis.v1 import common_pb2, gateway_pb2
from services.common.audio import SAMPLE_RATE_HZ
from services.common.errors import InvalidInput
from services.common.limits import check_vad_overrides, normalise_hotwords, shorten
from services.asr.sensevoice_tags import REQUEST_LANGUAGES

__all__ = ["MIN_SAMPLE_RATE_HZ", "MAX_SAMPLE_RATE_HZ", "MAX_FILE_CHANNELS", "MAX_SEPARATE_CHANNELS",
           "validate_config", "separate_channels", "check_separate_channels", "AudioConverter", "FileDecoder"]

MIN_SAMPLE_RATE_HZ = 8_000
MAX_SAMPLE_RATE_HZ = 192_000
MAX_SEPARATE_CHANNELS = 2
"""Channels a CHANNEL_MODE_SEPARATE session analyses at most (each is one VAD stream)."""
_BYTES_PER_SAMPLE = {common_pb2.AUDIO_ENCODING_PCM16LE: 2, common_pb2.AUDIO_ENCODING_FLOAT32LE: 4}


def _encoding_name(encoding: int) -> str:
    return common_pb2.AudioEncoding.Name(encoding) if encoding in common_pb2.AudioEncoding.values() else "unknown"


def validate_config(config: gateway_pb2.StreamConfig, *, audio_format_required: bool = True) -> None:
    """Raise InvalidInput naming the first bad field of ``config``."""
    if audio_format_required:
        if not MIN_SAMPLE_RATE_HZ <= config.sample_rate_hz <= MAX_SAMPLE_RATE_HZ:
            raise InvalidInput(
                f"config.sample_rate_hz must be between {MIN_SAMPLE_RATE_HZ} and {MAX_SAMPLE_RATE_HZ} Hz, "
                f"got {config.sample_rate_hz}")
        if config.encoding not in _BYTES_PER_SAMPLE:
            raise InvalidInput(
                f"config.encoding must be AUDIO_ENCODING_PCM16LE or AUDIO_ENCODING_FLOAT32LE, got {config.encoding} "
                f"({_encoding_name(config.encoding)})")
        if config.channels not in (0, 1, 2):
            raise InvalidInput(f"config.channels must be 1 or 2 (0 means 1), got {config.channels}")
    if config.channel_mode not in gateway_pb2.ChannelMode.values():
        raise InvalidInput(f"config.channel_mode {config.channel_mode} is unknown; "
                           "use CHANNEL_MODE_DOWNMIX or CHANNEL_MODE_SEPARATE")
    if config.mode not in common_pb2.AsrMode.values():
        raise InvalidInput(f"config.mode {config.mode} is unknown; use ASR_MODE_PARAFORMER or ASR_MODE_SENSEVOICE")
    if config.vad_backend not in common_pb2.VadBackend.values():
        raise InvalidInput(f"config.vad_backend {config.vad_backend} is unknown; "
                           "use VAD_BACKEND_SILERO or VAD_BACKEND_FSMN")
    if config.language and config.language not in REQUEST_LANGUAGES:
        raise InvalidInput(f"config.language {shorten(config.language)} is not one of "
                           f"{', '.join(REQUEST_LANGUAGES)}")
    normalise_hotwords(config.hotwords)
    vad = config.vad
    check_vad_overrides(threshold=vad.threshold, min_speech_duration_ms=vad.min_speech_duration_ms,
                        min_silence_duration_ms=vad.min_silence_duration_ms, speech_pad_ms=vad.speech_pad_ms,
                        max_speech_duration_s=vad.max_speech_duration_s, prefix="config.vad.")


def separate_channels(config: gateway_pb2.StreamConfig) -> bool:
    """Whether ``config`` asks for each channel to be analysed on its own."""
    return config.channel_mode == gateway_pb2.CHANNEL_MODE_SEPARATE


def check_separate_channels(channels: int) -> None:
    """Raise InvalidInput if a CHANNEL_MODE_SEPARATE session cannot take ``channels``."""
    if channels > MAX_SEPARATE_CHANNELS:
        raise InvalidInput(f"CHANNEL_MODE_SEPARATE analyses at most {MAX_SEPARATE_CHANNELS} channels, the audio "
                           f"has {channels}; downmix it (CHANNEL_MODE_DOWNMIX) or split the channels")


@dataclass
class AudioConverter:
    """Turns client chunks (any supported rate/encoding/channels) into 16 kHz float32.

    Mono (channels downmixed, 1-D) by default; with ``separate`` every channel is
    kept: 2-D, samples x channels, each column a 16 kHz mono stream.
    """

    sample_rate_hz: int
    encoding: int
    channels: int = 1
    separate: bool = False

    def __post_init__(self) -> None:
        self.channels = self.channels or 1
        self.frame_bytes = _BYTES_PER_SAMPLE[self.encoding] * self.channels
        self.output_channels = self.channels if self.separate else 1
        self._resampler = (None if self.sample_rate_hz == SAMPLE_RATE_HZ else
                           soxr.ResampleStream(self.sample_rate_hz, SAMPLE_RATE_HZ, self.output_channels,
                                               dtype="float32"))
        self.input_frames = 0  # client frames received, for duration limits

    def convert(self, data: bytes, last: bool = False) -> np.ndarray:
        """Raw client bytes in the configured encoding -> 16 kHz float32 (see the class)."""
        if len(data) % self.frame_bytes:
            raise InvalidInput(
                f"audio chunk of {len(data)} bytes is not a whole number of frames "
                f"({self.frame_bytes} bytes per frame for {common_pb2.AudioEncoding.Name(self.encoding)} "
                f"x {self.channels} channel(s)); split chunks on frame boundaries")
        if self.encoding == common_pb2.AUDIO_ENCODING_PCM16LE:
            samples = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
        else:
            samples = np.frombuffer(data, dtype="<f4").astype(np.float32)
            if samples.size and not np.isfinite(samples).all():
                raise InvalidInput("AUDIO_ENCODING_FLOAT32LE audio contains NaN or Inf samples")
        return self.convert_frames(samples.reshape(-1, self.channels), last=last)

    def convert_frames(self, frames: np.ndarray, last: bool = False) -> np.ndarray:
        """Float32 frames x channels at the input rate -> 16 kHz float32 (see the class)."""
        if self.separate:
            samples = np.ascontiguousarray(frames, dtype=np.float32)
        else:
            samples = frames[:, 0] if frames.shape[1] == 1 else frames.mean(axis=1, dtype=np.float32)
        self.input_frames += samples.shape[0]
        if self._resampler is not None:
            samples = self._resampler.resample_chunk(samples, last=last)
        return np.clip(samples, -1.0, 1.0).astype(np.float32, copy=False)

    def finish(self) -> np.ndarray:
        """The resampler's delayed tail; call once at end of stream."""
        if self._resampler is None:
            return np.zeros((0, self.channels) if self.separate else 0, dtype=np.float32)
        return self.convert(b"", last=True)

    @property
    def input_duration_s(self) -> float:
        return self.input_frames / self.sample_rate_hz


MAX_FILE_CHANNELS = 8
"""Files with more channels are refused (each block is decoded with all its channels)."""
_FILE_BLOCK_BYTES = 1 << 20
"""Decoded bytes (all channels, float32) per block read from a file: bounds the gateway's
memory for any file, however well it compresses."""


class FileDecoder:
    """Decodes an encoded file (WAV/FLAC/OGG/MP3) block by block, never whole.

    A compressed file can hold far more audio than its size suggests (a 448 KB
    FLAC of silence decodes to 10 minutes of 192 kHz stereo, 920 MB as float32),
    so the declared length is checked against ``max_duration_s`` before
    anything is decoded, the decoded length is checked again as blocks arrive,
    and at most ~1 MB of decoded audio exists at once.

    Usage::

        decoder = FileDecoder(content, max_duration_s=3600)   # raises InvalidInput
        while (frames := decoder.read_block()).size:           # float32 frames x channels
            ...
        decoder.truncation_note()   # text if the file held less audio than its header says
    """

    def __init__(self, content: bytes, max_duration_s: float):
        if not content:
            raise InvalidInput("the file is empty")
        self.max_duration_s = max_duration_s
        try:
            self._file = soundfile.SoundFile(io.BytesIO(content))
        except (soundfile.LibsndfileError, RuntimeError, TypeError) as exc:
            # libsndfile's message names the Python file object (<_io.BytesIO object at 0x...>):
            # keep only its reason.
            reason = str(exc).rsplit(": ", 1)[-1] if ": " in str(exc) else "unknown format"
            raise InvalidInput(f"could not decode the file as WAV, FLAC, OGG or MP3 ({reason})") from None
        self.sample_rate_hz = int(self._file.samplerate)
        self.channels = int(self._file.channels)
        if not MIN_SAMPLE_RATE_HZ <= self.sample_rate_hz <= MAX_SAMPLE_RATE_HZ:
            raise InvalidInput(f"the file's sample rate {self.sample_rate_hz} Hz is outside "
                               f"{MIN_SAMPLE_RATE_HZ}-{MAX_SAMPLE_RATE_HZ} Hz")
        if not 1 <= self.channels <= MAX_FILE_CHANNELS:
            raise InvalidInput(f"the file has {self.channels} channels; at most {MAX_FILE_CHANNELS} are supported")
        self.declared_frames = _wav_declared_frames(content, self.channels) or int(self._file.frames)
        self._check_duration(self.declared_frames, "declares")
        self.frames_read = 0
        self._block_frames = max(_FILE_BLOCK_BYTES // (4 * self.channels), 1)

    def _check_duration(self, frames: int, verb: str) -> None:
        duration_s = frames / self.sample_rate_hz
        if duration_s > self.max_duration_s:
            raise InvalidInput(
                f"the file {verb} {duration_s:.0f} s of audio; AnalyzeFile and Analyze accept at most "
                f"{self.max_duration_s:.0f} s per session (MAX_SESSION_S): split the recording")

    def read_block(self) -> np.ndarray:
        """The next block of float32 frames x channels; empty at the end of the file."""
        try:
            frames = self._file.read(self._block_frames, dtype="float32", always_2d=True)
        except (soundfile.LibsndfileError, RuntimeError) as exc:
            raise InvalidInput(f"the file is corrupt after {self.frames_read / self.sample_rate_hz:.1f} s "
                               f"of audio ({str(exc).rsplit(': ', 1)[-1]})") from None
        self.frames_read += frames.shape[0]
        self._check_duration(self.frames_read, "holds more than")
        if frames.size and not np.isfinite(frames).all():
            raise InvalidInput("the file contains NaN or Inf samples")
        return frames

    def truncation_note(self) -> str | None:
        """Says so when the file ended before the length its header declares."""
        if self.frames_read >= self.declared_frames:
            return None
        rate = self.sample_rate_hz
        return (f"the file is truncated: its header declares {self.declared_frames / rate:.1f} s of audio "
                f"but it holds {self.frames_read / rate:.1f} s; the {self.frames_read / rate:.1f} s were analysed")

    def close(self) -> None:
        self._file.close()


def _wav_declared_frames(content: bytes, channels: int) -> int | None:
    """Frames a RIFF/WAVE header declares in its ``data`` chunk (None if not a WAV).

    libsndfile silently clips a WAV's length to the bytes present, and Python's
    ``wave`` module reads PCM WAVs only; this walks the RIFF chunk list, which is
    all it takes to see what the header promised.
    """
    if len(content) < 12 or content[:4] not in (b"RIFF", b"RF64") or content[8:12] != b"WAVE":
        return None
    offset, bits = 12, None
    while offset + 8 <= len(content):
        chunk_id, size = content[offset:offset + 4], int.from_bytes(content[offset + 4:offset + 8], "little")
        body = offset + 8
        if chunk_id == b"fmt " and body + 16 <= len(content):
            bits = int.from_bytes(content[body + 14:body + 16], "little")
        elif chunk_id == b"data":
            if not bits or size == 0xFFFFFFFF:  # no format yet, or an RF64/streaming placeholder
                return None
            return size // (max(bits // 8, 1) * channels)
        offset = body + size + (size & 1)
    return None
