"""ASR mode names and their proto values, in one place.

Settings, logs, metric labels and the ASR engine use the names (``paraformer``,
``sensevoice``); the API uses ``common_pb2.AsrMode`` values, named ``ASR_MODE_<NAME>``,
so the mapping is derived from the enum itself and a new mode needs no table here.
"""

from __future__ import annotations

from speech_analysis.v1 import common_pb2

__all__ = ["MODE_NAMES", "mode_name", "mode_value"]

_PREFIX = "ASR_MODE_"

MODE_NAMES: tuple[str, ...] = tuple(name.removeprefix(_PREFIX).lower() for name, value in
                                    common_pb2.AsrMode.items() if value != common_pb2.ASR_MODE_UNSPECIFIED)
"""Every mode the API defines, by name."""


def mode_name(value: int) -> str:
    """``common_pb2.ASR_MODE_PARAFORMER`` -> ``"paraformer"``; ValueError for unknown values."""
    return common_pb2.AsrMode.Name(value).removeprefix(_PREFIX).lower()


def mode_value(name: str) -> int:
    """``"paraformer"`` -> ``common_pb2.ASR_MODE_PARAFORMER``; ValueError for unknown names."""
    return common_pb2.AsrMode.Value(_PREFIX + name.upper())
