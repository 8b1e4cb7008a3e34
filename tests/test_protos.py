"""The protos: committed Python stubs match them, and the public API stands on its own.

Layout (include root ``protos/``): ``speech_analysis/v1/`` is the public API
(``gateway.proto`` + ``common.proto``), ``speech_analysis/worker/v1/`` the
internal worker services. Stubs are generated beside the repository root as the
packages ``speech_analysis.v1`` and ``speech_analysis.worker.v1``.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.procs import ROOT

PROTOS = ROOT / "protos"
BUF = ROOT / "tools" / "buf" / "node_modules" / ".bin" / "buf"
BASELINE = PROTOS / "baseline" / "speech_analysis_v1.binpb"
PUBLIC = {"common", "gateway"}
WORKER = {"audio", "vad", "asr", "emotion", "speaker"}


def _protos() -> list[Path]:
    return sorted(PROTOS.rglob("*.proto"))


def test_protos_live_where_their_package_says():
    by_dir = {p.relative_to(PROTOS).parent.as_posix(): set() for p in _protos()}
    for proto in _protos():
        by_dir[proto.relative_to(PROTOS).parent.as_posix()].add(proto.stem)
        package = next(line.split()[1].rstrip(";") for line in proto.read_text().splitlines()
                       if line.startswith("package "))
        assert package.replace(".", "/") == proto.relative_to(PROTOS).parent.as_posix(), proto
    assert by_dir == {"speech_analysis/v1": PUBLIC, "speech_analysis/worker/v1": WORKER}


def test_generated_stubs_match_protos(tmp_path: Path):
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I", str(PROTOS), f"--python_out={tmp_path}",
         f"--pyi_out={tmp_path}", f"--grpc_python_out={tmp_path}",
         *[str(p.relative_to(PROTOS)) for p in _protos()]],
        check=True, cwd=PROTOS)
    generated = sorted(tmp_path.rglob("*_pb2*.py*"))
    assert len(generated) == 3 * len(PUBLIC | WORKER)
    stale = [str(g.relative_to(tmp_path)) for g in generated
             if (ROOT / g.relative_to(tmp_path)).read_bytes() != g.read_bytes()]
    assert not stale, f"stubs out of date, run scripts/gen_protos.sh: {stale}"
    committed = {p.relative_to(ROOT) for p in (ROOT / "speech_analysis").rglob("*_pb2*.py*")
                 if "__pycache__" not in p.parts}
    assert committed == {g.relative_to(tmp_path) for g in generated}, "stale stub files without a proto"


def test_public_api_imports_no_worker_proto():
    for name in PUBLIC:
        text = (PROTOS / "speech_analysis" / "v1" / f"{name}.proto").read_text()
        imports = [line for line in text.splitlines() if line.startswith("import ")]
        assert all('"speech_analysis/v1/' in line for line in imports), imports
    from speech_analysis.v1 import gateway_pb2

    assert [d.name for d in gateway_pb2.DESCRIPTOR.dependencies] == ["speech_analysis/v1/common.proto"]


def test_every_millisecond_field_is_uint64():
    from google.protobuf.descriptor import FieldDescriptor

    from speech_analysis.v1 import common_pb2, gateway_pb2
    from speech_analysis.worker.v1 import asr_pb2, audio_pb2, emotion_pb2, vad_pb2

    checked = []

    def walk(message):
        for field in message.fields:
            if field.name.endswith("_ms") and field.cpp_type in (FieldDescriptor.CPPTYPE_INT32,
                                                                 FieldDescriptor.CPPTYPE_INT64,
                                                                 FieldDescriptor.CPPTYPE_UINT32,
                                                                 FieldDescriptor.CPPTYPE_UINT64):
                checked.append(field.full_name)
                assert field.type == FieldDescriptor.TYPE_UINT64, field.full_name
        for nested in message.nested_types:
            walk(nested)

    for module in (common_pb2, gateway_pb2, asr_pb2, audio_pb2, emotion_pb2, vad_pb2):
        for message in module.DESCRIPTOR.message_types_by_name.values():
            walk(message)
    assert "speech_analysis.v1.AudioFeatures.duration_ms" in checked
    assert "speech_analysis.v1.TokenTimestamp.start_ms" in checked
    assert "speech_analysis.v1.VadConfig.speech_pad_ms" in checked


def test_enum_values_carry_their_type_prefix():
    from speech_analysis.v1 import common_pb2

    for enum in common_pb2.DESCRIPTOR.enum_types_by_name.values():
        prefix = "".join(f"_{c}" if c.isupper() else c.upper() for c in enum.name).lstrip("_") + "_"
        assert enum.values[0].name == prefix + "UNSPECIFIED" and enum.values[0].number == 0
        assert all(value.name.startswith(prefix) for value in enum.values), enum.name


def test_public_api_states_the_limits_a_client_can_hit():
    text = (PROTOS / "speech_analysis" / "v1" / "gateway.proto").read_text()
    for setting in ("MAX_MESSAGE_BYTES", "MAX_FILE_BYTES", "MAX_SESSION_S", "IDLE_TIMEOUT_S", "MAX_SESSIONS"):
        assert f"[{setting}]" in text, setting


@pytest.fixture(scope="module")
def buf() -> str:
    assert BUF.exists(), f"{BUF} missing: run bash scripts/install_test_deps.sh (npm ci in tools/buf)"
    return str(BUF)


def test_buf_lint_standard_passes(buf):
    config = (ROOT / "buf.yaml").read_text()
    assert "STANDARD" in config and "except:" not in config and "ignore" not in config
    result = subprocess.run([buf, "lint"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_buf_breaking_against_the_released_baseline(buf):
    result = subprocess.run([buf, "breaking", "--against", str(BASELINE)], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_buf_breaking_catches_a_wire_break(buf, tmp_path: Path):
    """The guard works: a renumbered field and a removed enum value in a copy of the tree fail it."""
    shutil.copy(ROOT / "buf.yaml", tmp_path / "buf.yaml")
    shutil.copytree(PROTOS, tmp_path / "protos")
    gateway = tmp_path / "protos" / "speech_analysis" / "v1" / "gateway.proto"
    text = gateway.read_text()
    assert "  bool interim_results = 6;" in text
    gateway.write_text(text.replace("  bool interim_results = 6;", "  bool interim_results = 16;"))
    common = tmp_path / "protos" / "speech_analysis" / "v1" / "common.proto"
    common.write_text(common.read_text().replace("  VAD_BACKEND_FSMN = 2;\n", ""))
    result = subprocess.run([buf, "breaking", "--against", str(BASELINE)], cwd=tmp_path,
                            capture_output=True, text=True)
    assert result.returncode != 0
    assert '"interim_results" on message "StreamConfig"' in result.stdout, result.stdout
    assert 'enum value "2" on enum "VadBackend" was deleted' in result.stdout, result.stdout
