"""Fresh virtual environments for the packaging tests (tests/test_packaging.py,
tests/test_client_wheel.py)."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

__all__ = ["fresh_venv", "pip_into"]


def fresh_venv(path: Path, with_deps_of_this_venv: bool) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    if with_deps_of_this_venv:
        purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                 check=True, capture_output=True, text=True).stdout.strip()
        Path(purelib, "_dev_venv_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def pip_into(python: Path, *args: str, cwd: Path | None = None) -> None:
    """This venv's pip acting on ``python``'s environment, with pip's configured indexes."""
    result = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), *args],
                            capture_output=True, text=True, cwd=cwd, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
