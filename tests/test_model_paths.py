"""Model resolution rules (services/common/model_paths.py) and the offline switch.

Every rule gets a fake tree of empty files under tmp_path; the /data fallbacks
are injected so nothing outside tmp_path is looked at.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from services.common import model_paths
from services.common.model_paths import (
    MODEL_NAMES,
    MODEL_SPECS,
    ModelFilesMissing,
    ResolvedModel,
    required_models,
    resolve_models,
)
from services.common.offline import OFFLINE_ENVIRONMENT, enable_offline_mode

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PARAFORMER_DIR = "speech_seaco_paraformer_large_asr_nat-zh-cn-16k-common-vocab8404-pytorch"
FSMN_DIR = "speech_fsmn_vad_zh-cn-16k-common-pytorch"
PUNC_DIR = "punc_ct-transformer_cn-en-common-vocab471067-large"
EMOTION2VEC_DIR = "emotion2vec_plus_base"
CAMPPLUS_DIR = "speech_campplus_sv_zh-cn_16k-common"
SENSEVOICE_REPO = Path("huggingface/hub/models--FunAudioLLM--SenseVoiceSmall")


def fill(directory: Path, name: str, skip: tuple[str, ...] = ()) -> Path:
    """Create the required files of model ``name`` (first alternative) as empty files."""
    for alternatives in MODEL_SPECS[name].required_files:
        relative = alternatives[0]
        if relative in skip:
            continue
        (directory / relative).parent.mkdir(parents=True, exist_ok=True)
        (directory / relative).touch()
    return directory


def fill_cache(cache: Path, layout: str = "models/iic", revision: str = "abc123") -> None:
    fill(cache / layout / PARAFORMER_DIR, "paraformer")
    fill(cache / layout / FSMN_DIR, "fsmn_vad")
    fill(cache / layout / PUNC_DIR, "ct_punc")
    fill(cache / layout / EMOTION2VEC_DIR, "emotion2vec")
    fill(cache / layout / CAMPPLUS_DIR, "campplus")
    fill(cache / SENSEVOICE_REPO / "snapshots" / revision, "sensevoice")
    (cache / SENSEVOICE_REPO / "refs").mkdir(parents=True, exist_ok=True)
    (cache / SENSEVOICE_REPO / "refs" / "main").write_text(revision)


def fill_fixed(project: Path) -> None:
    fill(project / "pretrained_models" / "emotion-recognition-wav2vec2-IEMOCAP", "speechbrain_emotion")
    fill(project / "silero-vad", "silero_vad")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    return root


@pytest.fixture
def fallbacks(tmp_path: Path) -> tuple[Path, Path]:
    return (tmp_path / "data" / "emotion_models", tmp_path / "data" / "emotion-models")


# --- MODEL_CACHE_DIR ------------------------------------------------------------


def test_environment_value_wins(project: Path, tmp_path: Path, fallbacks) -> None:
    cache = tmp_path / "elsewhere"
    fill_cache(cache)
    fill_cache(project / "pretrained_models" / "model_cache")
    fallbacks[0].mkdir(parents=True)
    layout = resolve_models(project, str(cache), fallbacks)
    assert layout.cache.path == cache
    assert layout.cache.rule == "MODEL_CACHE_DIR from environment"
    assert layout.paraformer.path == cache / "models" / "iic" / PARAFORMER_DIR
    assert layout.paraformer.rule.startswith("MODEL_CACHE_DIR from environment")
    assert layout.paraformer.complete


def test_relative_environment_value_is_relative_to_the_project(project: Path, fallbacks) -> None:
    fill_cache(project / "models-here")
    layout = resolve_models(project, "models-here", fallbacks)
    assert layout.cache.path == project / "models-here"
    assert layout.sensevoice.complete


@pytest.mark.parametrize("unset", [None, "", "   "])
def test_unset_or_empty_environment_uses_the_default(project: Path, fallbacks, unset) -> None:
    fill_cache(project / "pretrained_models" / "model_cache")
    fallbacks[0].mkdir(parents=True)
    layout = resolve_models(project, unset, fallbacks)
    assert layout.cache.path == project / "pretrained_models" / "model_cache"
    assert layout.cache.rule == "default pretrained_models/model_cache"
    assert layout.ct_punc.complete


def test_first_data_fallback(project: Path, fallbacks) -> None:
    fill_cache(fallbacks[0])
    fill_cache(fallbacks[1])
    layout = resolve_models(project, None, fallbacks)
    assert layout.cache.path == fallbacks[0]
    assert layout.cache.rule == f"{fallbacks[0]} fallback"
    assert layout.fsmn_vad.path == fallbacks[0] / "models" / "iic" / FSMN_DIR
    assert layout.fsmn_vad.complete


def test_second_data_fallback(project: Path, fallbacks) -> None:
    fill_cache(fallbacks[1])
    layout = resolve_models(project, None, fallbacks)
    assert layout.cache.path == fallbacks[1]
    assert layout.cache.rule == f"{fallbacks[1]} fallback"
    assert layout.paraformer.complete


def test_no_cache_anywhere_reports_the_default_as_missing(project: Path, fallbacks) -> None:
    layout = resolve_models(project, None, fallbacks)
    assert layout.cache.path == project / "pretrained_models" / "model_cache"
    assert not layout.cache.exists
    assert layout.paraformer.path == project / "pretrained_models" / "model_cache" / "models" / "iic" / PARAFORMER_DIR
    assert not layout.paraformer.complete
    assert layout.paraformer.missing == (
        "config.yaml", "configuration.json", "am.mvn", "tokens.json", "seg_dict", "model.pt")
    assert "(does not exist)" in layout.describe()


def test_default_fallbacks_are_the_data_directories() -> None:
    assert model_paths.DATA_FALLBACK_DIRS == (Path("/data/emotion_models"), Path("/data/emotion-models"))


# --- ModelScope layouts -----------------------------------------------------------


def test_models_iic_layout(project: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    fill_cache(cache, "models/iic")
    layout = resolve_models(project, str(cache), ())
    for name, directory in (("paraformer", PARAFORMER_DIR), ("fsmn_vad", FSMN_DIR), ("ct_punc", PUNC_DIR)):
        model = layout.get(name)
        assert model.path == cache / "models" / "iic" / directory
        assert model.rule == "MODEL_CACHE_DIR from environment, models/iic layout"
        assert model.complete and model.missing == ()


def test_hub_models_iic_layout(project: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    fill_cache(cache, "hub/models/iic")
    layout = resolve_models(project, str(cache), ())
    assert layout.paraformer.path == cache / "hub" / "models" / "iic" / PARAFORMER_DIR
    assert layout.paraformer.rule.endswith("hub/models/iic layout")
    assert layout.paraformer.complete


def test_complete_copy_wins_over_an_incomplete_one(project: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    fill(cache / "models" / "iic" / PUNC_DIR, "ct_punc", skip=("model.pt",))
    fill(cache / "hub" / "models" / "iic" / PUNC_DIR, "ct_punc")
    assert resolve_models(project, str(cache), ()).ct_punc.path == cache / "hub" / "models" / "iic" / PUNC_DIR


def test_incomplete_modelscope_dir_names_the_missing_file(project: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    fill(cache / "models" / "iic" / PARAFORMER_DIR, "paraformer", skip=("seg_dict",))
    layout = resolve_models(project, str(cache), ())
    assert layout.paraformer.path == cache / "models" / "iic" / PARAFORMER_DIR
    assert layout.paraformer.missing == ("seg_dict",)
    assert not layout.paraformer.complete


# --- SenseVoice in the Hugging Face cache --------------------------------------


def test_hf_snapshot_from_refs_main(project: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    fill_cache(cache, revision="abc123")
    (cache / SENSEVOICE_REPO / "snapshots" / "older").mkdir()
    layout = resolve_models(project, str(cache), ())
    assert layout.sensevoice.path == cache / SENSEVOICE_REPO / "snapshots" / "abc123"
    assert layout.sensevoice.rule == "MODEL_CACHE_DIR from environment, HF cache snapshot refs/main -> abc123"
    assert layout.sensevoice.complete


def test_hf_single_snapshot_without_refs_main(project: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    fill(cache / SENSEVOICE_REPO / "snapshots" / "only1", "sensevoice")
    layout = resolve_models(project, str(cache), ())
    assert layout.sensevoice.path == cache / SENSEVOICE_REPO / "snapshots" / "only1"
    assert "refs/main missing, only snapshot" in layout.sensevoice.rule
    assert layout.sensevoice.complete


def test_hf_several_snapshots_without_refs_main_are_ambiguous(project: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    fill(cache / SENSEVOICE_REPO / "snapshots" / "one", "sensevoice")
    fill(cache / SENSEVOICE_REPO / "snapshots" / "two", "sensevoice")
    model = resolve_models(project, str(cache), ()).sensevoice
    assert model.path is None and not model.complete
    assert "ambiguous" in model.rule


def test_hf_refs_main_to_a_missing_snapshot(project: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    (cache / SENSEVOICE_REPO / "refs").mkdir(parents=True)
    (cache / SENSEVOICE_REPO / "refs" / "main").write_text("deadbeef\n")
    model = resolve_models(project, str(cache), ()).sensevoice
    assert model.path == cache / SENSEVOICE_REPO / "snapshots" / "deadbeef"
    assert "refs/main -> deadbeef" in model.rule
    assert "model.pt" in model.missing and not model.complete


def test_hf_snapshot_missing_a_file(project: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    fill_cache(cache)
    (cache / SENSEVOICE_REPO / "snapshots" / "abc123" / "chn_jpn_yue_eng_ko_spectok.bpe.model").unlink()
    model = resolve_models(project, str(cache), ()).sensevoice
    assert model.missing == ("chn_jpn_yue_eng_ko_spectok.bpe.model",)


# --- fixed paths --------------------------------------------------------------------


def test_fixed_paths_ignore_the_model_cache(project: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    fill_fixed(cache)  # decoys: must not be picked up
    fill_fixed(project)
    layout = resolve_models(project, str(cache), ())
    assert layout.speechbrain_emotion.path == project / "pretrained_models" / "emotion-recognition-wav2vec2-IEMOCAP"
    assert layout.silero_vad.path == project / "silero-vad"
    assert layout.speechbrain_emotion.rule == layout.silero_vad.rule == "fixed path"
    assert layout.speechbrain_emotion.complete and layout.silero_vad.complete


def test_wav2vec2_weights_in_either_format(project: Path) -> None:
    emotion = project / "pretrained_models" / "emotion-recognition-wav2vec2-IEMOCAP"
    fill(emotion, "speechbrain_emotion", skip=("wav2vec2-base/model.safetensors",))
    model = resolve_models(project, None, ()).speechbrain_emotion
    assert model.missing == ("wav2vec2-base/model.safetensors or wav2vec2-base/pytorch_model.bin",)
    (emotion / "wav2vec2-base" / "pytorch_model.bin").touch()
    assert resolve_models(project, None, ()).speechbrain_emotion.complete


def test_training_checkpoints_are_not_required(project: Path) -> None:
    emotion = project / "pretrained_models" / "emotion-recognition-wav2vec2-IEMOCAP"
    fill(emotion, "speechbrain_emotion")
    assert not (emotion / "wav2vec2_checkpoints").exists()
    assert resolve_models(project, None, ()).speechbrain_emotion.complete


def test_directory_named_like_a_file_does_not_count(project: Path) -> None:
    silero = fill(project / "silero-vad", "silero_vad", skip=("hubconf.py",))
    (silero / "hubconf.py").mkdir()
    assert resolve_models(project, None, ()).silero_vad.missing == ("hubconf.py",)


# --- messages -------------------------------------------------------------------------


def test_missing_message_names_path_file_and_command(project: Path) -> None:
    fill(project / "pretrained_models" / "model_cache" / "models" / "iic" / PARAFORMER_DIR, "paraformer",
         skip=("model.pt",))
    layout = resolve_models(project, None, ())
    message = layout.missing_message(["paraformer"])
    assert str(project / "pretrained_models" / "model_cache" / "models" / "iic" / PARAFORMER_DIR) in message
    assert "missing: model.pt" in message
    assert "python scripts/download_models.py --paraformer" in message
    assert "--cache-dir" not in message  # default cache: the plain command puts files where they are looked for


def test_missing_message_for_a_custom_cache_passes_it_on(project: Path, tmp_path: Path) -> None:
    layout = resolve_models(project, str(tmp_path / "models"), ())
    message = layout.missing_message(["fsmn_vad", "ct_punc", "sensevoice", "speechbrain_emotion"])
    command = "python scripts/download_models.py --paraformer --sensevoice --speechbrain"
    assert f"{command} --cache-dir {tmp_path / 'models'}" in message


def test_missing_message_is_empty_when_complete(project: Path) -> None:
    fill_cache(project / "pretrained_models" / "model_cache")
    fill_fixed(project)
    layout = resolve_models(project, None, ())
    assert layout.missing_message() == ""
    assert layout.incomplete() == ()
    layout.require(MODEL_NAMES)


def test_require_raises_for_required_models_only(project: Path) -> None:
    fill(project / "pretrained_models" / "emotion-recognition-wav2vec2-IEMOCAP", "speechbrain_emotion")
    layout = resolve_models(project, None, ())
    layout.require(["speechbrain_emotion", "silero_vad"])  # silero is optional
    with pytest.raises(ModelFilesMissing) as raised:
        layout.require(required_models("sensevoice", emotion=True, vad_backend="silero"))
    assert [m.name for m in raised.value.models] == ["sensevoice"]
    assert "python scripts/download_models.py --sensevoice" in str(raised.value)


def test_describe_lists_every_model_with_rule_and_state(project: Path) -> None:
    fill_fixed(project)
    text = resolve_models(project, None, ()).describe()
    assert text.splitlines()[0].startswith("model cache: ")
    for name in MODEL_NAMES:
        assert f"  {name}: " in text
    assert "silero_vad: " in text and "[fixed path] ok" in text
    assert "MISSING config.yaml" in text


def test_download_command() -> None:
    assert model_paths.download_command(["silero_vad"], Path("/x")) == "python scripts/download_models.py --silero"
    assert (model_paths.download_command(["ct_punc", "paraformer"], Path("/my models"))
            == "python scripts/download_models.py --paraformer --cache-dir '/my models'")


def test_complete_model_needs_a_path_and_no_missing_files() -> None:
    with pytest.raises(ValueError):
        ResolvedModel(name="paraformer", path=None, rule="x", missing=(), complete=True)
    with pytest.raises(ValueError):
        ResolvedModel(name="paraformer", path=Path("/x"), rule="x", missing=("model.pt",), complete=True)


def test_unknown_model_name(project: Path) -> None:
    with pytest.raises(KeyError):
        resolve_models(project, None, ()).get("whisper")


# --- copying the project ---------------------------------------------------------------


def test_copied_project_resolves_at_its_new_location(tmp_path: Path) -> None:
    original = tmp_path / "original"
    fill_cache(original / "pretrained_models" / "model_cache", layout="hub/models/iic")
    fill_fixed(original)
    copy = tmp_path / "somewhere" / "else"
    shutil.copytree(original, copy)
    shutil.rmtree(original)
    layout = resolve_models(copy, None, ())
    assert all(model.complete for model in layout.models()), layout.describe()
    assert all(model.path is not None and copy in model.path.parents for model in layout.models())


# --- required_models ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "emotion", "backend", "expected"),
    [
        ("paraformer", False, None, ["paraformer", "fsmn_vad", "ct_punc"]),
        ("sensevoice", False, None, ["sensevoice"]),
        ("both", True, "silero",
         ["paraformer", "fsmn_vad", "ct_punc", "sensevoice", "speechbrain_emotion", "silero_vad"]),
        ("sensevoice", True, "fsmn", ["sensevoice", "speechbrain_emotion", "fsmn_vad"]),
        ("paraformer", False, "fsmn", ["paraformer", "fsmn_vad", "ct_punc"]),
        ("sensevoice", False, "energy", ["sensevoice"]),
    ],
)
def test_required_models(mode, emotion, backend, expected) -> None:
    assert required_models(mode, emotion=emotion, vad_backend=backend) == expected


def test_required_models_for_the_emotion2vec_worker(project: Path) -> None:
    assert required_models("paraformer", emotion=True, vad_backend=None, emotion_model="emotion2vec") == [
        "paraformer", "fsmn_vad", "ct_punc", "emotion2vec"]
    with pytest.raises(ValueError, match="unknown emotion model"):
        required_models("paraformer", emotion=True, vad_backend=None, emotion_model="whisper")
    # emotion2vec+ lives in the model cache in ModelScope layout, like the Paraformer trio
    cache = project / "pretrained_models" / "model_cache"
    layout = resolve_models(project, None, ())
    assert layout.emotion2vec.path == cache / "models" / "iic" / EMOTION2VEC_DIR
    assert not layout.emotion2vec.complete
    assert "python scripts/download_models.py --emotion2vec" in layout.missing_message(["emotion2vec"])
    fill(cache / "hub" / "models" / "iic" / EMOTION2VEC_DIR, "emotion2vec")
    found = resolve_models(project, None, ()).emotion2vec
    assert found.complete and found.path == cache / "hub" / "models" / "iic" / EMOTION2VEC_DIR


def test_required_models_for_the_speaker_worker(project: Path) -> None:
    assert required_models("paraformer", emotion=True, vad_backend="silero", speaker=True) == [
        "paraformer", "fsmn_vad", "ct_punc", "speechbrain_emotion", "silero_vad", "campplus"]
    assert "campplus" not in required_models("both", emotion=True, vad_backend="fsmn")  # off by default
    # CAM++ lives in the model cache in ModelScope layout, like the Paraformer trio
    cache = project / "pretrained_models" / "model_cache"
    layout = resolve_models(project, None, ())
    assert layout.campplus.path == cache / "models" / "iic" / CAMPPLUS_DIR
    assert not layout.campplus.complete
    message = layout.missing_message(["campplus"])
    assert "python scripts/download_models.py --speaker" in message
    assert "configuration.json, config.yaml, campplus_cn_common.bin" in message
    fill(cache / "hub" / "models" / "iic" / CAMPPLUS_DIR, "campplus", skip=("config.yaml",))
    incomplete = resolve_models(project, None, ()).campplus
    assert not incomplete.complete and incomplete.missing == ("config.yaml",)
    fill(cache / "hub" / "models" / "iic" / CAMPPLUS_DIR, "campplus")
    found = resolve_models(project, None, ()).campplus
    assert found.complete and found.path == cache / "hub" / "models" / "iic" / CAMPPLUS_DIR


def test_required_models_rejects_an_unknown_mode() -> None:
    with pytest.raises(ValueError, match="unknown ASR mode"):
        required_models("whisper", emotion=False, vad_backend=None)


# --- import weight and offline switch ----------------------------------------------------------


def test_modules_stay_light_for_the_gateway() -> None:
    code = (
        "import sys, services.common.model_paths, services.common.offline\n"
        "heavy = ('torch', 'huggingface_hub', 'modelscope', 'transformers', 'funasr')\n"
        "heavy = [m for m in heavy if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, check=True)


def test_enable_offline_mode_on_a_mapping() -> None:
    environ = {"HF_HUB_OFFLINE": "0", "OTHER": "x"}
    changed = enable_offline_mode(environ)
    assert environ == {**OFFLINE_ENVIRONMENT, "OTHER": "x"}
    assert changed == dict(OFFLINE_ENVIRONMENT)
    assert enable_offline_mode(environ) == {}


def test_enable_offline_mode_reaches_an_already_imported_hub_client(monkeypatch: pytest.MonkeyPatch) -> None:
    constants = pytest.importorskip("huggingface_hub.constants")
    for key in OFFLINE_ENVIRONMENT:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    enable_offline_mode()
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"
    assert constants.HF_HUB_OFFLINE is True
    import huggingface_hub

    assert huggingface_hub.is_offline_mode()
