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

from protos.v1 import asr_pb2, audio_pb2, gateway_pb2, vad_pb2
from services.common.audio import SAMPLE_RATE_HZ
from services.common.errors import InvalidInput

__all__ = ["MIN_SAMPLE_RATE_HZ", "MAX_SAMPLE_RATE_HZ", "validate_config", "AudioConverter", "decode_file"]

MIN_SAMPLE_RATE_HZ = 8_000
MAX_SAMPLE_RATE_HZ = 192_000
_BYTES_PER_SAMPLE = {audio_pb2.PCM16LE: 2, audio_pb2.FLOAT32LE: 4}


def validate_config(config: gateway_pb2.StreamConfig, *, audio_format_required: bool = True) -> None:
    """Raise InvalidInput naming the first bad field of ``config``."""
    if audio_format_required:
        if not MIN_SAMPLE_RATE_HZ <= config.sample_rate_hz <= MAX_SAMPLE_RATE_HZ:
            raise InvalidInput(
                f"config.sample_rate_hz must be between {MIN_SAMPLE_RATE_HZ} and {MAX_SAMPLE_RATE_HZ} Hz, "
                f"got {config.sample_rate_hz}")
        if config.encoding not in _BYTES_PER_SAMPLE:
            raise InvalidInput(
                f"config.encoding must be PCM16LE or FLOAT32LE, got {config.encoding} "
                f"({audio_pb2.AudioEncoding.Name(config.encoding) if config.encoding in audio_pb2.AudioEncoding.values() else 'unknown'})")
        if config.channels not in (0, 1, 2):
            raise InvalidInput(f"config.channels must be 1 or 2 (0 means 1), got {config.channels}")
    if config.mode not in asr_pb2.AsrMode.values():
        raise InvalidInput(f"config.mode {config.mode} is unknown; use PARAFORMER or SENSEVOICE")
    if config.vad_backend not in vad_pb2.VadBackend.values():
        raise InvalidInput(f"config.vad_backend {config.vad_backend} is unknown; use SILERO or FSMN")
    if config.language and config.language not in {"auto", "zh", "en", "yue", "ja", "ko"}:
        raise InvalidInput(f"config.language {config.language!r} is not one of auto, zh, en, yue, ja, ko")


@dataclass
class AudioConverter:
    """Turns client chunks (any supported rate/encoding/channels) into 16 kHz mono float32."""

    sample_rate_hz: int
    encoding: int
    channels: int = 1

    def __post_init__(self) -> None:
        self.channels = self.channels or 1
        self.frame_bytes = _BYTES_PER_SAMPLE[self.encoding] * self.channels
        self._resampler = (None if self.sample_rate_hz == SAMPLE_RATE_HZ else
                           soxr.ResampleStream(self.sample_rate_hz, SAMPLE_RATE_HZ, 1, dtype="float32"))
        self.input_frames = 0  # client frames received, for duration limits

    def convert(self, data: bytes, last: bool = False) -> np.ndarray:
        if len(data) % self.frame_bytes:
            raise InvalidInput(
                f"audio chunk of {len(data)} bytes is not a whole number of frames "
                f"({self.frame_bytes} bytes per frame for {audio_pb2.AudioEncoding.Name(self.encoding)} "
                f"x {self.channels} channel(s)); split chunks on frame boundaries")
        if self.encoding == audio_pb2.PCM16LE:
            samples = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
        else:
            samples = np.frombuffer(data, dtype="<f4").astype(np.float32)
            if samples.size and not np.isfinite(samples).all():
                raise InvalidInput("FLOAT32LE audio contains NaN or Inf samples")
        if self.channels > 1:
            samples = samples.reshape(-1, self.channels).mean(axis=1, dtype=np.float32)
        self.input_frames += samples.size
        if self._resampler is not None:
            samples = self._resampler.resample_chunk(samples, last=last)
        return np.clip(samples, -1.0, 1.0).astype(np.float32, copy=False)

    def finish(self) -> np.ndarray:
        """The resampler's delayed tail; call once at end of stream."""
        if self._resampler is None:
            return np.zeros(0, dtype=np.float32)
        return self.convert(b"", last=True)

    @property
    def input_duration_s(self) -> float:
        return self.input_frames / self.sample_rate_hz


def decode_file(content: bytes) -> tuple[np.ndarray, int, int]:
    """Decode WAV/FLAC/OGG/MP3 bytes -> (float32 frames x channels, sample rate, channels)."""
    if not content:
        raise InvalidInput("the file is empty")
    try:
        data, rate = soundfile.read(io.BytesIO(content), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as exc:
        raise InvalidInput(f"could not decode the file as WAV, FLAC, OGG or MP3: {exc}") from None
    if data.shape[0] == 0:
        raise InvalidInput("the file decodes to no audio (truncated or empty)")
    if not MIN_SAMPLE_RATE_HZ <= rate <= MAX_SAMPLE_RATE_HZ:
        raise InvalidInput(f"the file's sample rate {rate} Hz is outside {MIN_SAMPLE_RATE_HZ}-{MAX_SAMPLE_RATE_HZ} Hz")
    if not np.isfinite(data).all():
        raise InvalidInput("the file contains NaN or Inf samples")
    return data, int(rate), int(data.shape[1])
