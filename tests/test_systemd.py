"""deploy/systemd/: unit files systemd accepts, in step with the launcher and compose.

``systemd-analyze verify`` parses every unit and drop-in the way systemd does
(unknown keys, bad values, a missing executable). It prints problems it then
ignores and still exits 0, so the check is that it prints nothing; a broken
copy shows that it would. The units name /opt/speech-analysis; for the check
that path is rewritten to this checkout, whose .venv/bin/python exists.
"""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

from services import launcher as launch
from tests.procs import ROOT

SYSTEMD = ROOT / "deploy" / "systemd"
INSTALL_DIR = "/opt/speech-analysis"
UNITS = {name: SYSTEMD / f"speech-analysis-{name}.service" for name in launch.TOPOLOGY}
PROFILES = sorted(path.name for path in (SYSTEMD / "profiles").iterdir())

needs_systemd = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze not installed (scripts/install_test_deps.sh installs the systemd package)")


def _staged(tmp_path: Path, profile: str | None) -> Path:
    """The units (and a profile's drop-in directories) with INSTALL_DIR pointing at this checkout."""
    unit_dir = tmp_path / "units"
    unit_dir.mkdir()
    for path in [*UNITS.values(), SYSTEMD / "speech-analysis.target"]:
        (unit_dir / path.name).write_text(path.read_text().replace(INSTALL_DIR, str(ROOT)))
    if profile:
        for dropin_dir in (SYSTEMD / "profiles" / profile).iterdir():
            (unit_dir / dropin_dir.name).mkdir()
            for conf in dropin_dir.iterdir():
                (unit_dir / dropin_dir.name / conf.name).write_text(conf.read_text().replace(INSTALL_DIR, str(ROOT)))
    return unit_dir


def _verify(unit_dir: Path) -> subprocess.CompletedProcess:
    names = sorted(p.name for p in unit_dir.iterdir() if p.is_file())
    return subprocess.run(["systemd-analyze", "verify", "--man=no", *names], cwd=unit_dir, capture_output=True,
                          text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "SYSTEMD_UNIT_PATH": f"{unit_dir}:",
                                                       "SYSTEMD_LOG_COLOR": "0"})


@needs_systemd
@pytest.mark.parametrize("profile", [None, *PROFILES])
def test_systemd_analyze_verify_accepts_the_units(tmp_path, profile):
    result = _verify(_staged(tmp_path, profile))
    assert result.returncode == 0 and (result.stdout + result.stderr).strip() == "", result.stdout + result.stderr


@needs_systemd
def test_verify_would_report_a_broken_unit_and_drop_in(tmp_path):
    unit_dir = _staged(tmp_path, "small-host")
    vad = unit_dir / "speech-analysis-vad.service"
    vad.write_text(vad.read_text().replace("Restart=on-failure", "Restart=sometimes"))
    with open(unit_dir / "speech-analysis-asr.service.d" / "small-host.conf", "a") as conf:
        conf.write("MemoryMax=lots\n")
    output = _verify(unit_dir)
    text = output.stdout + output.stderr
    assert "sometimes" in text and "lots" in text, text


def _unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # keys are case-sensitive
    parser.read_string(path.read_text())
    return parser


def _all_values(path: Path, section: str, key: str) -> list[str]:
    prefix = f"{key}="
    values, current = [], None
    for line in path.read_text().splitlines():
        if line.startswith("["):
            current = line.strip("[]")
        elif current == section and line.startswith(prefix):
            values.append(line[len(prefix):])
    return values


def _environment(path: Path) -> dict[str, str]:
    env = {}
    for value in _all_values(path, "Service", "Environment"):
        for item in value.split():
            key, _, val = item.partition("=")
            env[key] = val
    return env


def test_one_unit_per_launcher_process_with_the_launchers_environment():
    launcher = launch.stack_env({})
    for name, spec in launch.TOPOLOGY.items():
        unit = _unit(UNITS[name])
        service = unit["Service"]
        assert service["ExecStart"] == f"{INSTALL_DIR}/.venv/bin/python -m {spec['module']}"
        env = _environment(UNITS[name])
        for key, value in launcher[name].items():
            assert env.get(key) == value, f"{name}: {key}={env.get(key)!r}, launcher has {value!r}"
        assert unit["Install"]["WantedBy"] == "speech-analysis.target"
        assert unit["Unit"]["PartOf"] == "speech-analysis.target"
    target = _unit(SYSTEMD / "speech-analysis.target")
    # The optional processes (the speaker worker) join the target when enabled (their WantedBy=).
    assert set(target["Unit"]["Wants"].split()) == {UNITS[name].name for name in launch.default_names()}
    assert _environment(UNITS["emotion"])["EMOTION_LAZY_LOAD"] == "0"


def test_units_restart_on_failure_and_are_hardened():
    users = (SYSTEMD / "speech-analysis.sysusers.conf").read_text()
    for name, path in UNITS.items():
        service = _unit(path)["Service"]
        assert service["Restart"] == "on-failure" and service["RestartPreventExitStatus"] == "2", name
        assert service["User"] == service["Group"] == "speech-analysis", name
        assert f"u     {service['User']}" in users
        assert service["NoNewPrivileges"] == "yes" and service["ProtectSystem"] == "strict", name
        assert service["ProtectHome"] == "yes" and service["PrivateTmp"] == "yes", name
        assert service["CapabilityBoundingSet"] == "", name


def _bytes(value: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    return int(value[:-1]) * units[value[-1]] if value[-1] in units else int(value)


def test_memory_max_matches_compose_per_profile():
    """MemoryMax= (default units, and each profile's drop-in) is the compose memory limit of
    the same profile, so the measured figures live in step in both places."""
    from tests.test_deploy import compose_config

    base = ROOT / "docker-compose.yml"
    optional = tuple(launch.OPTIONAL)  # compose runs them in profiles named after them
    composes = {None: compose_config(profiles=optional)}
    for profile in PROFILES:
        composes[profile] = compose_config({}, base, ROOT / f"docker-compose.{profile}.yml", profiles=optional)
    for profile, compose in composes.items():
        for name, path in UNITS.items():
            if profile is None:
                memory_max = _unit(path)["Service"]["MemoryMax"]
            else:
                dropin = SYSTEMD / "profiles" / profile / f"{path.name}.d" / f"{profile}.conf"
                memory_max = _unit(dropin)["Service"]["MemoryMax"]
                files = _all_values(dropin, "Service", "EnvironmentFile")
                assert files[:2] == ["", f"{INSTALL_DIR}/deploy/profiles/{profile}.env"], files
                assert files[-1] == "-/etc/speech-analysis/local.env"  # local overrides win
            limit = compose["services"][name]["deploy"]["resources"]["limits"]["memory"]
            assert _bytes(memory_max) == _bytes(limit), (profile, name, memory_max, limit)
