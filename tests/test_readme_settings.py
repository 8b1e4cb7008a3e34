"""The README's settings table is the one ``python -m services.common.settings`` prints."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_settings_table_is_generated_from_settings_module():
    table = subprocess.run([sys.executable, "-m", "services.common.settings"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.strip()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert table.count("\n") > 10
    assert table in readme, ("README settings table is stale: regenerate it with "
                             "`python -m services.common.settings`")
