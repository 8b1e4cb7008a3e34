"""Committed Python stubs must be exactly what grpcio-tools generates from protos/."""

import subprocess
import sys
from pathlib import Path

from tests.procs import ROOT


def test_generated_stubs_match_protos(tmp_path: Path):
    protos = sorted((ROOT / "protos" / "v1").glob("*.proto"))
    assert {p.stem for p in protos} == {"audio", "vad", "asr", "emotion", "gateway"}
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I", str(ROOT), f"--python_out={tmp_path}",
         f"--pyi_out={tmp_path}", f"--grpc_python_out={tmp_path}",
         *[str(p.relative_to(ROOT)) for p in protos]],
        check=True, cwd=ROOT)
    generated = sorted((tmp_path / "protos" / "v1").glob("*_pb2*.py*"))
    assert len(generated) == 15
    stale = [g.name for g in generated
             if (ROOT / "protos" / "v1" / g.name).read_bytes() != g.read_bytes()]
    assert not stale, f"stubs out of date, run scripts/gen_protos.sh: {stale}"
