"""The ONNX exports' cache key (tests/fixture_models.py): a cached export is reused exactly
while nothing it depends on has changed."""

from __future__ import annotations

import shutil

from tests.fixture_models import export_key
from tests.procs import ROOT


def test_export_key_follows_the_script_the_services_code_and_the_model_files(tmp_path):
    root = tmp_path / "checkout"
    shutil.copytree(ROOT / "services", root / "services", ignore=shutil.ignore_patterns("__pycache__"))
    script = root / "scripts" / "export_speaker_onnx.py"
    script.parent.mkdir()
    shutil.copy(ROOT / "scripts" / "export_speaker_onnx.py", script)
    model, other_model = tmp_path / "model", tmp_path / "other-model"
    model.mkdir()
    (model / "model.pt").write_bytes(b"weights")
    key = export_key(script, model, root)
    assert export_key(script, model, root) == key  # stable
    assert export_key(script, other_model, root) != key
    (model / "model.pt").write_bytes(b"other weights")  # the model rebuilt in place
    rebuilt = export_key(script, model, root)
    assert rebuilt != key
    key = rebuilt

    (root / "services" / "README.txt").write_text("not code")
    assert export_key(script, model, root) == key
    engine = root / "services" / "speaker" / "engine.py"
    engine.write_text(engine.read_text() + "\n# changed\n")
    changed = export_key(script, model, root)
    assert changed != key
    script.write_text(script.read_text() + "\n# changed\n")
    assert export_key(script, model, root) not in (key, changed)
