"""The generated FunASR fixtures load through the unmodified ``funasr.AutoModel``, offline.

Weights are random, so nothing here checks accuracy. The tests check what a
consumer relies on and what could actually break: the on-disk layout, every
checkpoint key matching the model FunASR builds from the config, and the
output structures (text, timestamps, VAD segments, punctuation, SenseVoice
tags), all with the network blocked.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import socket
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import soundfile as sf

from scripts.fixtures.common import BUILDER_VERSION, funasr_automodel
from scripts.fixtures.funasr_models import SENSEVOICE_REPO_ID, SENSEVOICE_TARGET, FunasrModelTree, funasr_model_tree
from services.common.fixture_marker import MARKER_FILENAME, is_random_weights, read_random_weights_marker
from tests.fixture_models import tiny_models_dir

SHARED_AUDIO = Path(__file__).resolve().parents[2] / "shared" / "audio"
SAMPLE_RATE_HZ = 16000
PUNCTUATION = "，。？、,.?"
_LOOPBACK = {"127.0.0.1", "::1", "localhost", "0.0.0.0"}


# --------------------------------------------------------------------------- helpers


class NetworkBlocked(OSError):
    pass


def _blocked_host(address: Any) -> str | None:
    """The host of a non-loopback internet address, or None when allowed."""
    if isinstance(address, tuple) and address:
        host = str(address[0])
        return None if host in _LOOPBACK else host
    return None  # AF_UNIX paths and the like


@pytest.fixture(scope="module")
def no_network() -> Iterator[list[str]]:
    """Block non-loopback connections and name lookups; yield the attempts made.

    Module-scoped so the models loaded by module fixtures are loaded with the
    network already blocked.
    """
    attempts: list[str] = []
    mp = pytest.MonkeyPatch()
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def connect(self: socket.socket, address: Any) -> Any:
        host = _blocked_host(address)
        if host is not None:
            attempts.append(host)
            raise NetworkBlocked(f"network blocked in tests: connect to {address!r}")
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> Any:
        host = _blocked_host(address)
        if host is not None:
            attempts.append(host)
            raise NetworkBlocked(f"network blocked in tests: connect to {address!r}")
        return real_connect_ex(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None and str(host) not in _LOOPBACK:
            attempts.append(str(host))
            raise socket.gaierror(socket.EAI_NONAME, f"network blocked in tests: lookup of {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    mp.setattr(socket.socket, "connect", connect)
    mp.setattr(socket.socket, "connect_ex", connect_ex)
    mp.setattr(socket, "getaddrinfo", getaddrinfo)
    mp.setenv("HF_HUB_OFFLINE", "1")
    mp.setenv("TRANSFORMERS_OFFLINE", "1")
    mp.setenv("MODELSCOPE_OFFLINE", "1")
    yield attempts
    mp.undo()


@pytest.fixture(scope="module")
def tree() -> FunasrModelTree:
    return funasr_model_tree(tiny_models_dir())


@pytest.fixture(scope="module")
def hf_offline(tree: FunasrModelTree, no_network: list[str]) -> Iterator[None]:
    """Point huggingface_hub at the tree's HF cache, offline.

    huggingface_hub reads HF_HOME/HF_HUB_CACHE/HF_HUB_OFFLINE once, at import;
    another test may have imported it already, so the constants are patched as
    well as the environment (a worker process sets the environment before it
    imports funasr).
    """
    import huggingface_hub.constants as hf_constants

    mp = pytest.MonkeyPatch()
    mp.setenv("HF_HOME", str(tree.hf_home))
    mp.setenv("HF_HUB_CACHE", str(tree.hf_hub_cache))
    mp.setattr(hf_constants, "HF_HUB_CACHE", str(tree.hf_hub_cache))
    mp.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    yield
    mp.undo()


@contextlib.contextmanager
def _captured_load_output() -> Iterator[io.StringIO]:
    """Capture what model loading prints and logs (FunASR reports missing keys with print())."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setLevel(logging.INFO)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        with contextlib.redirect_stdout(buffer):
            yield buffer
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


@pytest.fixture(scope="module", autouse=True)
def _restore_torch_threads() -> Iterator[None]:
    """AutoModel sets torch's global thread count; give the next test module what it had."""
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _load(**kwargs: Any) -> tuple[Any, str]:
    """AutoModel on CPU, offline. One thread: tiny models gain nothing from more, and with
    several OpenMP runtimes loaded (torch, sentencepiece and scikit-learn each bring a
    libgomp) spinning threads make small ops very slow on a busy 2-core host."""
    # The full registry: an earlier test module in this process (xdist runs several per
    # worker) may have imported FunASR selectively, registering only what its models need.
    AutoModel = funasr_automodel()

    with _captured_load_output() as out:
        model = AutoModel(disable_update=True, disable_pbar=True, ncpu=1, device="cpu", **kwargs)
    return model, out.getvalue()


def _assert_all_keys_matched(log_text: str, n_models: int) -> None:
    assert "miss key in ckpt" not in log_text
    assert "ignore_init_mismatch" not in log_text
    assert log_text.count("All keys matched successfully") == n_models, log_text[-2000:]


def _clip(name: str, seconds: float | None = None) -> np.ndarray:
    audio, rate = sf.read(SHARED_AUDIO / f"{name}.wav", dtype="float32")
    assert rate == SAMPLE_RATE_HZ and audio.ndim == 1
    return audio if seconds is None else audio[: int(seconds * SAMPLE_RATE_HZ)]


def _assert_timestamps(timestamps: Any, duration_ms: float) -> None:
    assert isinstance(timestamps, list) and timestamps
    previous_end = 0
    for item in timestamps:
        assert isinstance(item, list) and len(item) == 2
        start, end = item
        assert isinstance(start, int) and isinstance(end, int)
        assert 0 <= start <= end <= duration_ms + 1, timestamps
        assert start >= previous_end - 1, timestamps  # monotonic, adjacent tokens may touch
        previous_end = end


# --------------------------------------------------------------------------- layout


def test_tree_has_the_real_layout_and_markers(tree: FunasrModelTree) -> None:
    expected = {
        tree.paraformer_dir: ("config.yaml", "configuration.json", "am.mvn", "tokens.json", "seg_dict", "model.pt"),
        tree.vad_dir: ("config.yaml", "configuration.json", "am.mvn", "model.pt"),
        tree.punc_dir: ("config.yaml", "configuration.json", "tokens.json", "jieba_usr_dict", "model.pt"),
        tree.sensevoice_snapshot_dir(): ("config.yaml", "configuration.json", "am.mvn",
                                         "chn_jpn_yue_eng_ko_spectok.bpe.model", "model.pt"),
    }
    for model_dir, files in expected.items():
        for name in files + (MARKER_FILENAME,):
            assert (model_dir / name).is_file(), model_dir / name
        marker = read_random_weights_marker(model_dir)
        assert marker is not None and marker["random_weights"] is True
        assert marker["size"] == "tiny" and marker["builder_version"] == BUILDER_VERSION
        assert is_random_weights(model_dir)
        conf = json.loads((model_dir / "configuration.json").read_text(encoding="utf-8"))
        for value in _leaves(conf["file_path_metas"]):
            assert (model_dir / value).is_file(), value
    assert not is_random_weights(tree.root)

    # am.mvn dimensions the frontends expect: 80 mel bins x LFR window
    assert _am_mvn_dim(tree.paraformer_dir / "am.mvn") == 560
    assert _am_mvn_dim(tree.vad_dir / "am.mvn") == 400
    assert len(json.loads((tree.paraformer_dir / "tokens.json").read_text(encoding="utf-8"))) == 8404

    # Hugging Face cache: refs/main names the snapshot; files are links into blobs/
    repo = tree.sensevoice_repo_dir
    assert repo.name == "models--" + SENSEVOICE_REPO_ID.replace("/", "--")
    revision = (repo / "refs" / "main").read_text(encoding="utf-8")
    assert re.fullmatch(r"[0-9a-f]{40}", revision)
    model_pt = repo / "snapshots" / revision / "model.pt"
    assert model_pt.is_symlink() and model_pt.resolve().parent == (repo / "blobs").resolve()


def _leaves(tree: Any) -> Iterator[str]:
    if isinstance(tree, dict):
        for value in tree.values():
            yield from _leaves(value)
    elif isinstance(tree, str):
        yield tree


def _am_mvn_dim(path: Path) -> int:
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("<AddShift>"):
            return int(line.split()[1])
    raise AssertionError(f"no <AddShift> in {path}")


# --------------------------------------------------------------------------- Paraformer trio


@pytest.fixture(scope="module")
def paraformer(tree: FunasrModelTree, no_network: list[str]) -> tuple[Any, str]:
    return _load(model=str(tree.paraformer_dir))


@pytest.fixture(scope="module")
def paraformer_pipeline(tree: FunasrModelTree, no_network: list[str]) -> tuple[Any, str]:
    return _load(model=str(tree.paraformer_dir), vad_model=str(tree.vad_dir), punc_model=str(tree.punc_dir))


def test_paraformer_gives_text_and_timestamps(paraformer: tuple[Any, str]) -> None:
    model, log_text = paraformer
    _assert_all_keys_matched(log_text, 1)
    audio = _clip("zh_weather", 3.0)
    result = model.generate(audio)
    assert isinstance(result, list) and len(result) == 1
    item = result[0]
    assert {"key", "text", "timestamp"} <= set(item)
    tokens = item["text"].split()
    assert tokens, item
    _assert_timestamps(item["timestamp"], 3000)
    assert len(item["timestamp"]) == len(tokens)


def test_paraformer_accepts_hotwords(paraformer: tuple[Any, str]) -> None:
    model, _ = paraformer
    result = model.generate(_clip("zh_weather", 3.0), hotword="今天 天气 公园")
    assert result[0]["text"].strip()
    _assert_timestamps(result[0]["timestamp"], 3000)


def test_paraformer_batch_of_arrays(paraformer: tuple[Any, str]) -> None:
    model, _ = paraformer
    clips = [_clip("zh_single"), _clip("zh_weather", 2.0)]
    result = model.generate(clips, batch_size=2)
    assert len(result) == 2
    for item, clip in zip(result, clips):
        _assert_timestamps(item["timestamp"], len(clip) / SAMPLE_RATE_HZ * 1000)


def test_pipeline_with_vad_and_punctuation(paraformer_pipeline: tuple[Any, str]) -> None:
    model, log_text = paraformer_pipeline
    _assert_all_keys_matched(log_text, 3)
    audio = _clip("zh_weather")
    duration_ms = len(audio) / SAMPLE_RATE_HZ * 1000
    result = model.generate(audio, batch_size_s=60, sentence_timestamp=True)
    assert len(result) == 1
    item = result[0]
    assert {"key", "text", "timestamp", "sentence_info"} <= set(item)
    assert item["text"][-1] in PUNCTUATION
    _assert_timestamps(item["timestamp"], duration_ms)
    assert item["sentence_info"]
    for sentence in item["sentence_info"]:
        assert {"text", "start", "end", "timestamp"} <= set(sentence)
        assert 0 <= sentence["start"] <= sentence["end"] <= duration_ms + 1


def test_fsmn_vad_segments_speech_not_silence(tree: FunasrModelTree, no_network: list[str]) -> None:
    model, log_text = _load(model=str(tree.vad_dir))
    _assert_all_keys_matched(log_text, 1)
    audio = _clip("zh_weather")
    duration_ms = len(audio) / SAMPLE_RATE_HZ * 1000
    result = model.generate(audio, max_end_silence_time=400)
    assert len(result) == 1 and {"key", "value"} <= set(result[0])
    segments = result[0]["value"]
    assert segments and all(isinstance(s, list) and len(s) == 2 for s in segments)
    flat = [t for s in segments for t in s]
    assert flat == sorted(flat) and 0 <= flat[0] and flat[-1] <= duration_ms + 1
    assert all(end > start for start, end in segments)
    # the fixture VAD is trained on speech-like audio: digital silence has no speech
    assert model.generate(np.zeros(2 * SAMPLE_RATE_HZ, dtype=np.float32))[0]["value"] == []


def test_ct_punc_punctuates_text(tree: FunasrModelTree, no_network: list[str]) -> None:
    model, log_text = _load(model=str(tree.punc_dir))
    _assert_all_keys_matched(log_text, 1)
    text = "今天天气很好我们去公园散步吧我有点累了想早点回家休息"
    result = model.generate(text)
    assert len(result) == 1 and {"key", "text", "punc_array"} <= set(result[0])
    out = result[0]["text"]
    assert out[-1] in PUNCTUATION
    assert "<unk>" not in out
    assert "".join(c for c in out if c not in PUNCTUATION) == text
    assert len(result[0]["punc_array"]) > 0


# --------------------------------------------------------------------------- SenseVoice


@pytest.fixture(scope="module")
def sensevoice(hf_offline: None) -> tuple[Any, str]:
    return _load(model=SENSEVOICE_REPO_ID, hub="hf")


def test_sensevoice_loads_by_hf_name_offline(sensevoice: tuple[Any, str], tree: FunasrModelTree,
                                             no_network: list[str]) -> None:
    model, log_text = sensevoice
    _assert_all_keys_matched(log_text, 1)
    assert Path(model.model_path).resolve() == tree.sensevoice_snapshot_dir().resolve()
    assert no_network == [], f"loading tried to reach {no_network}"


@pytest.mark.parametrize("clip", ["zh_single", "en_meeting"])
@pytest.mark.parametrize(("language", "use_itn"), [("auto", True), ("auto", False), ("en", False), ("zh", True)])
def test_sensevoice_emits_rich_tags(sensevoice: tuple[Any, str], clip: str, language: str, use_itn: bool) -> None:
    model, _ = sensevoice
    result = model.generate(_clip(clip), language=language, use_itn=use_itn)
    assert len(result) == 1 and {"key", "text"} <= set(result[0])
    text = result[0]["text"]
    tags = re.findall(r"<\|([^|]+)\|>", text)
    expected_lang = "zh" if language == "auto" else language
    assert tags == [expected_lang, "HAPPY", "Speech", "withitn" if use_itn else "woitn"], text
    assert text == SENSEVOICE_TARGET.text(language, use_itn)


def test_sensevoice_marker_describes_its_output(sensevoice: tuple[Any, str], tree: FunasrModelTree) -> None:
    model, _ = sensevoice
    marker = read_random_weights_marker(tree.sensevoice_snapshot_dir())
    assert marker is not None
    example = marker["trained_target"]["example"]
    assert model.generate(_clip("zh_weather", 3.0))[0]["text"] == example


def test_sensevoice_timestamps_and_batch(sensevoice: tuple[Any, str]) -> None:
    model, _ = sensevoice
    audio = _clip("zh_single")
    result = model.generate(audio, language="auto", use_itn=False, output_timestamp=True)
    item = result[0]
    assert {"text", "timestamp", "words"} <= set(item)
    assert len(item["timestamp"]) == len(item["words"]) > 0
    _assert_timestamps(item["timestamp"], len(audio) / SAMPLE_RATE_HZ * 1000)

    batch = model.generate([_clip("zh_single"), _clip("en_meeting", 4.0)], language="auto", use_itn=True,
                           batch_size=2)
    assert [r["text"] for r in batch] == [SENSEVOICE_TARGET.text("auto", True)] * 2


def test_sensevoice_with_fsmn_vad(tree: FunasrModelTree, hf_offline: None) -> None:
    model, log_text = _load(model=SENSEVOICE_REPO_ID, hub="hf", vad_model=str(tree.vad_dir))
    _assert_all_keys_matched(log_text, 2)
    result = model.generate(_clip("zh_service"), language="auto", use_itn=True, batch_size_s=60,
                            merge_vad=True, merge_length_s=15)
    assert len(result) == 1
    assert result[0]["text"].startswith("<|zh|><|HAPPY|><|Speech|><|withitn|>")


def test_network_was_really_blocked(no_network: list[str]) -> None:
    with pytest.raises(OSError):
        socket.create_connection(("192.0.2.1", 443), timeout=1)
    with pytest.raises(OSError):
        socket.getaddrinfo("www.modelscope.cn", 443)
