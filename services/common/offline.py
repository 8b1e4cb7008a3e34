"""Switch the model hub clients to offline mode, in one place.

Workers call :func:`enable_offline_mode` once their models have resolved to
local directories (see ``services.common.model_paths``), *before* importing
transformers, speechbrain or funasr. From then on a missing file fails at once
with a "not found locally" error instead of a hub request that hangs or
retries for minutes on a host without network.

What each library honours:

* huggingface_hub / transformers / datasets: ``HF_HUB_OFFLINE``,
  ``TRANSFORMERS_OFFLINE``, ``HF_DATASETS_OFFLINE``; telemetry is switched off
  too. huggingface_hub reads these when it is first imported.
* ModelScope (modelscope 1.40 / modelscope-hub 0.5) has no offline switch. It
  makes no request when given a local model directory, which is what
  ``model_paths`` hands the workers; never pass it a model id on an offline host.

This module writes environment variables on purpose: that is the only
interface these libraries offer. It reads none for configuration.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, MutableMapping

__all__ = ["OFFLINE_ENVIRONMENT", "enable_offline_mode"]

log = logging.getLogger(__name__)

#: Variables set by :func:`enable_offline_mode`, with their values.
OFFLINE_ENVIRONMENT: Mapping[str, str] = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
}


def enable_offline_mode(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set the offline switches in ``environ`` (``os.environ`` by default).

    Returns the variables whose value changed. When ``environ`` is the process
    environment and huggingface_hub was already imported, its cached offline
    flag is updated as well so the switch takes effect anyway.
    """
    target = os.environ if environ is None else environ
    changed = {key: value for key, value in OFFLINE_ENVIRONMENT.items() if target.get(key) != value}
    target.update(changed)
    if changed:
        log.info("hub clients offline: set %s", ", ".join(f"{k}={v}" for k, v in sorted(changed.items())))
    if target is os.environ:
        constants = sys.modules.get("huggingface_hub.constants")
        if constants is not None and not getattr(constants, "HF_HUB_OFFLINE", True):
            # huggingface_hub evaluates HF_HUB_OFFLINE once, at import; a worker
            # that imported it early would otherwise stay online. Remove once
            # every worker calls this before its first hub-related import.
            constants.HF_HUB_OFFLINE = True
            log.warning("huggingface_hub was imported before enable_offline_mode(); forced its offline flag")
    return changed
