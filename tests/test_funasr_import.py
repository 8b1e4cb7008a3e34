"""Selective FunASR import (services/funasr/imports.py) against FunASR's own full import.

Each import runs in a fresh interpreter: which modules a process has imported
is the point, and a pytest process may have imported FunASR fully already.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from services.funasr.imports import COMPONENT_MODULES, component_names
from services.common.model_paths import resolve_models
from tests.procs import ROOT

_PROBE = r"""
import json, sys
from pathlib import Path
dirs = [Path(p) for p in sys.argv[1:]]
from services.funasr.imports import automodel_class
automodel_class(*dirs)
from funasr.register import tables
from services.funasr.imports import component_names
resolved = {}
for name in set().union(*(component_names(d) for d in dirs)):
    for table in (getattr(tables, attr) for attr in dir(tables) if attr.endswith("_classes")):
        if isinstance(table, dict) and isinstance(table.get(name), type):
            resolved[name] = table[name].__module__ + "." + table[name].__qualname__
print(json.dumps({"resolved": resolved, "modules": sorted(m for m in sys.modules if m.startswith("funasr.")),
                  "sklearn": "sklearn" in sys.modules}))
"""


def probe(*dirs) -> dict:
    """What importing for ``dirs`` (services.funasr.imports.automodel_class) registered and imported."""
    out = subprocess.run([sys.executable, "-c", _PROBE, *map(str, dirs)], cwd=ROOT, check=True,
                         capture_output=True, text=True, timeout=300).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def model_dirs(model_env):
    layout = resolve_models(model_env["PROJECT_ROOT"], model_env["MODEL_CACHE_DIR"])
    return [layout.paraformer.path, layout.fsmn_vad.path, layout.ct_punc.path, layout.sensevoice.path,
            layout.emotion2vec.path, layout.campplus.path]


@pytest.fixture(scope="module")
def outside_dir(model_dirs, tmp_path_factory):
    """The Paraformer fixture under a model name the selective table does not know."""
    other = tmp_path_factory.mktemp("outside") / "paraformer-plain"
    shutil.copytree(model_dirs[0], other, symlinks=True)
    config = (other / "config.yaml").read_text(encoding="utf-8")
    (other / "config.yaml").write_text(config.replace("model: SeacoParaformer", "model: Paraformer", 1),
                                       encoding="utf-8")
    return other


@pytest.fixture(scope="module")
def full(model_dirs, outside_dir) -> dict:
    """FunASR's own full import, as the selective path falls back to it for a model outside
    the table (one full import serves both tests: it costs ~10 s of CPU)."""
    return probe(*model_dirs, outside_dir)


def test_selective_import_registers_the_classes_the_full_import_does(model_dirs, full):
    names = set().union(*(component_names(d) for d in model_dirs))
    assert names <= COMPONENT_MODULES.keys()
    selective = probe(*model_dirs)
    assert set(selective["resolved"]) == names
    assert selective["resolved"] == {name: full["resolved"][name] for name in names}
    for name, where in selective["resolved"].items():
        assert where.startswith(COMPONENT_MODULES[name] + "."), (name, where)
    # what makes it cheaper: model families nobody asked for stay unimported
    assert len(selective["modules"]) < len(full["modules"]) / 2
    assert "funasr.models.transducer.model" in full["modules"]
    assert "funasr.models.transducer.model" not in selective["modules"]
    assert full["sklearn"] and not selective["sklearn"]  # speaker clustering: a stand-in


def test_a_model_outside_the_table_gets_the_full_import(outside_dir, full):
    assert "Paraformer" in component_names(outside_dir) and "Paraformer" not in COMPONENT_MODULES
    assert full["resolved"]["Paraformer"].startswith("funasr.models.paraformer.model.")
    assert "funasr.models.transducer.model" in full["modules"]


def test_speaker_clustering_stand_in_fails_clearly():
    code = ("from pathlib import Path; import sys\n"
            "from services.funasr.imports import automodel_class\n"
            "automodel_class()\n"
            "from funasr.auto.auto_model import ClusterBackend\n"
            "ClusterBackend()\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "speaker clustering (spk_model) is not available in this worker" in result.stderr
