"""One way to open an ONNX model on the CPU (Silero VAD, the emotion and speaker exports).

onnxruntime is imported here only when a session is opened, so importing this module
costs nothing in a process that never uses it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["cpu_session"]


def cpu_session(path: Path, threads: int = 1, spin: bool = True) -> Any:
    """``onnxruntime.InferenceSession`` on the CPU with ``threads`` intra-op threads.

    ``spin=False``: pool threads sleep between calls instead of spinning (workers whose
    model runs now and then on a small host's shared cores). Warnings (unused
    initializers of an export) are not logged.
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
