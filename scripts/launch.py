"""Start the whole stack from a checkout: ``python scripts/launch.py [--only vad,gateway]``.

The launcher itself is :mod:`services.launcher` (``speech-analysis-launch`` once installed).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.launcher import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
