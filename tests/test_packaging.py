"""Packaging: the runtime requirement set, the service's ``pip install .``, and the client wheel.

* requirements.txt (what pyproject.toml, scripts/install.sh and the Docker image install) holds
  the runtime set only; test and benchmark tools live in requirements-test.txt and
  requirements-bench.txt, and every third-party module the code imports is declared.
* ``pip install .`` of the service in a fresh venv gives one working console command per process.

The client wheel's test, which needs the running stack, is tests/test_client_wheel.py.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.procs import ROOT
from tests.venvs import fresh_venv, pip_into

TEST_AND_BENCH_TOOLS = {"pytest", "pytest-timeout", "playwright", "matplotlib", "grpcio-tools",
                        "jsonschema", "referencing", "cryptography"}
CONSOLE_COMMANDS = {  # command -> a flag its --help must list
    "speech-analysis-gateway": "--vad-address",
    "speech-analysis-vad": "--max-streams",
    "speech-analysis-asr": "--max-batch",
    "speech-analysis-emotion": "--window-s",
    "speech-analysis-launch": "--only",
    "speech-analysis-client": "--address",
}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names(path: Path) -> set[str]:
    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            names.add(_normalise(re.split(r"[\s<>=!~;\[]", line, maxsplit=1)[0]))
    return names


def _third_party_imports(paths: list[Path]) -> dict[str, set[str]]:
    """Top-level module -> files importing it, for modules outside the stdlib and the repo."""
    # bench/ and scripts/ run as scripts, so their files also import each other by bare name
    siblings = {p.stem for folder in ("bench", "scripts") for p in (ROOT / folder).glob("*.py")} | {
        p.parent.name for p in (ROOT / "bench").glob("*/__init__.py")}  # packages: bench/stackbench/
    local = {"gateway", "services", "scripts", "speech_analysis", "speech_analysis_client", "tests", "bench",
             *siblings}
    found: dict[str, set[str]] = {}
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top not in sys.stdlib_module_names and top not in local:
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def _undeclared(paths: list[Path], declared: set[str], optional: dict[str, str]) -> dict[str, set[str]]:
    distributions = importlib.metadata.packages_distributions()
    missing = {}
    for module, files in _third_party_imports(paths).items():
        if module in optional:
            assert _normalise(optional[module]) in declared, module
            continue
        dists = {_normalise(d) for d in distributions.get(module, [module])}
        if not dists & declared:
            missing[module] = files
    return missing


def test_runtime_requirements_hold_no_test_or_bench_tools():
    runtime = requirement_names(ROOT / "requirements.txt")
    assert not runtime & TEST_AND_BENCH_TOOLS, runtime & TEST_AND_BENCH_TOOLS
    tools = requirement_names(ROOT / "requirements-test.txt") | requirement_names(ROOT / "requirements-bench.txt")
    assert TEST_AND_BENCH_TOOLS <= tools
    assert not runtime & tools
    # pyproject's dependencies are that file; the tools are extras
    dynamic = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["dynamic"]
    assert dynamic["dependencies"] == {"file": ["requirements.txt"]}
    assert dynamic["optional-dependencies"]["test"] == {"file": ["requirements-test.txt"]}
    assert dynamic["optional-dependencies"]["bench"] == {"file": ["requirements-bench.txt"]}
    # the image installs what scripts/install.sh installs, which is the runtime set only
    dockerfile = (ROOT / "Dockerfile").read_text()
    install = (ROOT / "scripts" / "install.sh").read_text()
    assert "bash scripts/install.sh" in dockerfile and "requirements-" not in dockerfile
    assert "-r requirements.txt" in install and "requirements-" not in install


def test_every_third_party_import_is_declared():
    """Runtime code imports only what requirements.txt declares; tests and benchmarks may add
    their own tools. ``sounddevice`` is the CLI's optional --mic (the ``mic`` extra)."""
    runtime = requirement_names(ROOT / "requirements.txt")
    service = [*ROOT.glob("gateway/**/*.py"), *ROOT.glob("services/**/*.py"), *ROOT.glob("speech_analysis/**/*.py"),
               *ROOT.glob("speech_analysis_client/*.py"), *ROOT.glob("scripts/**/*.py")]
    optional = {"sounddevice": "sounddevice", "modelscope_hub": "modelscope-hub"}
    mic = requirement_names(ROOT / "requirements-mic.txt")
    assert _undeclared(service, runtime | mic, optional) == {}
    tests = requirement_names(ROOT / "requirements-test.txt")
    assert _undeclared(list(ROOT.glob("tests/*.py")), runtime | tests, {}) == {}
    bench = requirement_names(ROOT / "requirements-bench.txt")
    assert _undeclared(list(ROOT.glob("bench/**/*.py")), runtime | bench, {}) == {}


@pytest.mark.slow
def test_service_pip_install_gives_console_commands(tmp_path: Path):
    """``pip install .`` (a copy of the project, so the checkout is not on the path) into a fresh
    venv, then ``--help`` of every console command, run from elsewhere.

    Installed with ``--no-deps --no-build-isolation`` into a venv whose site-packages reaches this
    development venv's through a .pth file: reinstalling torch, FunASR and SpeechBrain would take
    minutes and gigabytes for nothing this test checks (the dependency metadata is checked by the
    requirement tests above, and the client wheel test resolves real dependencies). The commands
    import the installed copy of the service, which the test asserts.
    """
    project = tmp_path / "project"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "build", "*.egg-info")
    for name in ("gateway", "services", "speech_analysis", "speech_analysis_client"):
        shutil.copytree(ROOT / name, project / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md", "requirements.txt", "requirements-test.txt",
                 "requirements-bench.txt", "requirements-mic.txt"):
        shutil.copy(ROOT / name, project / name)
    python = fresh_venv(tmp_path / "venv", with_deps_of_this_venv=True)
    pip_into(python, "install", "--no-deps", "--no-build-isolation", "-q", str(project))
    shutil.rmtree(project)  # the installed copy must stand on its own
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run([str(python), "-c", "import gateway.web, services.launcher, speech_analysis.v1.gateway_pb2, "
                            "speech_analysis_client; print(gateway.web.__file__)"],
                           cwd=elsewhere, check=True, capture_output=True, text=True).stdout
    assert where.startswith(str(tmp_path / "venv")), where
    installed = Path(where.strip()).parent
    assert (installed / "web" / "index.html").is_file() and (installed / "web" / "app.js").is_file()
    for command, flag in CONSOLE_COMMANDS.items():
        result = subprocess.run([str(tmp_path / "venv" / "bin" / command), "--help"], cwd=elsewhere,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, (command, result.stdout + result.stderr)
        assert "usage:" in result.stdout and flag in result.stdout, (command, result.stdout)
