"""The ASR engine without gRPC: tag parsing, request validation, lean loading, pipelines.

Engines load the tiny random-weight fixtures in-process. Their transcripts are
meaningless; the tests check structure (timestamps, splitting, punctuation
applied, tags parsed, options reaching the model), never accuracy.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from services.asr.engine import load_engine
from services.asr.requests import (PARAFORMER, SENSEVOICE, AsrOptions, AsrRequest, ModelDirs, modes_for,
                                   normalise_language)
from services.asr.sensevoice_tags import parse_sensevoice, strip_tags
from services.common.errors import InvalidInput, WrongMode
from services.common.limits import normalise_hotwords
from services.common.model_paths import resolve_models
from tests.conftest import read_clip

PUNCTUATION = set("，。？、,.?!！")


# --------------------------------------------------------------------------- pure functions


def test_sensevoice_tags_become_fields_and_leave_the_text():
    parsed = parse_sensevoice("<|zh|><|HAPPY|><|Speech|><|withitn|>今天天气很好。")
    assert parsed.text == "今天天气很好。"
    assert (parsed.language.code, parsed.language.display_name) == ("zh", "中文")
    assert (parsed.emotion.code, parsed.emotion.display_name) == ("HAPPY", "开心")
    assert (parsed.event.code, parsed.event.display_name) == ("Speech", "语音")
    assert parsed.itn is True


@pytest.mark.parametrize("emotion, code, name", [
    ("SAD", "SAD", "悲伤"), ("ANGRY", "ANGRY", "生气"), ("NEUTRAL", "NEUTRAL", "中性"),
    ("FEARFUL", "FEARFUL", "恐惧"), ("DISGUSTED", "DISGUSTED", "厌恶"), ("SURPRISED", "SURPRISED", "惊讶"),
    ("EMO_UNKNOWN", "unknown", "未知")])
def test_every_emotion_has_a_display_name(emotion, code, name):
    parsed = parse_sensevoice(f"<|en|><|{emotion}|><|BGM|><|woitn|>hello there")
    assert (parsed.emotion.code, parsed.emotion.display_name) == (code, name)
    assert (parsed.language.display_name, parsed.event.display_name, parsed.itn) == ("英文", "背景音乐", False)
    assert parsed.text == "hello there"


@pytest.mark.parametrize("event, name", [("Laughter", "笑声"), ("Applause", "掌声"), ("Cry", "哭声"),
                                         ("Cough", "咳嗽"), ("Sneeze", "喷嚏"), ("Breath", "呼吸")])
def test_events_and_languages_have_display_names(event, name):
    for lang, lang_name in [("yue", "粤语"), ("ja", "日语"), ("ko", "韩语")]:
        parsed = parse_sensevoice(f"<|{lang}|><|NEUTRAL|><|{event}|><|woitn|>")
        assert (parsed.event.display_name, parsed.language.display_name) == (name, lang_name)
        assert parsed.text == ""


def test_text_never_keeps_a_tag_even_repeated_or_unknown():
    raw = "<|zh|><|SAD|><|Speech|><|woitn|>你好 <|zh|><|NEUTRAL|><|Speech|><|woitn|>世界<|Whatever|>"
    parsed = parse_sensevoice(raw)
    assert "<|" not in parsed.text and "|>" not in parsed.text
    assert parsed.text == "你好世界"
    assert parsed.emotion.code == "SAD"  # the first group wins
    assert parsed.unknown_tags == ("Whatever",)
    assert strip_tags("<|nospeech|><|Event_UNK|>") == ""


def test_hotwords_are_validated():
    assert normalise_hotwords(["天气", " 公园 散步 ", "天气", ""]) == ("天气", "公园", "散步")
    for bad in ["http://example.com/words", "words.txt", "a/b", "x" * 40]:
        with pytest.raises(InvalidInput):
            normalise_hotwords([bad])
    with pytest.raises(InvalidInput):
        normalise_hotwords([f"w{i}" for i in range(101)])


def test_languages_and_modes():
    assert normalise_language("") == "auto"
    assert normalise_language(" EN ") == "en"
    with pytest.raises(InvalidInput):
        normalise_language("fr")
    assert modes_for("both") == (PARAFORMER, SENSEVOICE)
    assert modes_for("sensevoice") == (SENSEVOICE,)
    with pytest.raises(ValueError):
        modes_for("whisper")


# --------------------------------------------------------------------------- models


@pytest.fixture(scope="module")
def layout(model_env):
    return resolve_models(model_env["PROJECT_ROOT"], model_env["MODEL_CACHE_DIR"])


@pytest.fixture(scope="module")
def engine(layout):
    dirs = ModelDirs(paraformer=layout.paraformer.path, fsmn_vad=layout.fsmn_vad.path,
                     ct_punc=layout.ct_punc.path, sensevoice=layout.sensevoice.path)
    threads = torch.get_num_threads()
    engine = load_engine(dirs, (PARAFORMER, SENSEVOICE), AsrOptions(threads=1, max_segment_s=6.0))
    engine.warm_up()
    yield engine
    torch.set_num_threads(threads)  # load_engine sets the process-wide value


def test_lean_loading_gives_the_same_weights_as_funasr(layout):
    from funasr.train_utils.load_pretrained_model import load_pretrained_model

    from services.funasr.lean_loading import lean_load_pretrained_model
    from services.funasr.automodel import load_automodel

    model = load_automodel(layout.paraformer.path, threads=1, lean=True).model
    reference = {k: v.clone() for k, v in model.state_dict().items()}
    for tensor in model.state_dict().values():
        if tensor.is_floating_point():
            tensor.data.normal_()  # scramble, then load both ways
    checkpoint = str(layout.paraformer.path / "model.pt")
    load_pretrained_model(path=checkpoint, model=model)
    funasr_state = {k: v.clone() for k, v in model.state_dict().items()}
    lean_load_pretrained_model(checkpoint, model)
    lean_state = model.state_dict()
    assert funasr_state.keys() == lean_state.keys() == reference.keys()
    for key in reference:
        assert torch.equal(funasr_state[key], lean_state[key]), key
        assert torch.equal(reference[key], lean_state[key]), key


def test_paraformer_text_is_punctuated_and_timed(engine):
    audio, _ = read_clip("zh_weather")
    segment = audio[8000:102990]  # first sentence, 5.9 s
    result = engine.transcribe(AsrRequest(segment, mode=PARAFORMER))
    assert result.text and result.raw_text
    assert set(result.text) & PUNCTUATION, result.text
    assert not set(result.raw_text) & PUNCTUATION
    assert result.text != result.raw_text
    duration_ms = segment.size * 1000 // 16000
    starts = [t.start_ms for t in result.tokens]
    assert result.tokens and starts == sorted(starts)
    assert all(0 <= t.start_ms <= t.end_ms <= duration_ms for t in result.tokens)
    assert "".join(t.token for t in result.tokens) == result.raw_text.replace(" ", "")


def test_hotwords_reach_the_model(engine):
    audio, _ = read_clip("zh_weather")
    engine.transcribe(AsrRequest(audio[8000:60000], mode=PARAFORMER, hotwords=("天气", "公园")))
    # SeACo-Paraformer keeps the tokenised list of the last call: two words plus its <s> sentinel.
    assert len(engine.automodels["paraformer"].model.hotword_list) == 3
    engine.transcribe(AsrRequest(audio[8000:60000], mode=PARAFORMER))
    assert engine.automodels["paraformer"].model.hotword_list is None


def test_long_segment_is_split_and_timestamps_span_beyond_the_cap(engine):
    audio, _ = read_clip("zh_weather")  # 18.8 s, cap is 6 s
    result = engine.transcribe(AsrRequest(audio, mode=PARAFORMER))
    assert result.pieces >= 3
    assert result.tokens[-1].end_ms > 6000 * 2
    starts = [t.start_ms for t in result.tokens]
    assert starts == sorted(starts) and result.tokens[-1].end_ms <= audio.size * 1000 // 16000


@pytest.mark.parametrize("mode", [PARAFORMER, SENSEVOICE])
def test_silent_and_tiny_segments_give_empty_text(engine, mode):
    for samples in (np.zeros(16000, np.float32), np.full(40, 0.3, np.float32)):
        result = engine.transcribe(AsrRequest(samples, mode=mode))
        assert (result.text, result.tokens, result.pieces) == ("", (), 0)


def test_batch_keeps_order_and_per_request_timestamps(engine):
    audio, _ = read_clip("zh_weather")
    short, longer = audio[8000:40000], audio[112000:200000]
    results = engine.transcribe_batch([AsrRequest(short, mode=PARAFORMER),
                                       AsrRequest(np.zeros(800, np.float32), mode=PARAFORMER),
                                       AsrRequest(longer, mode=PARAFORMER)])
    assert [bool(r.text) for r in results] == [True, False, True]
    assert results[0].tokens[-1].end_ms <= 2000 < results[2].tokens[-1].end_ms


def test_sensevoice_tags_itn_and_language_reach_the_model(engine):
    audio, _ = read_clip("zh_single")
    plain = engine.transcribe(AsrRequest(audio, mode=SENSEVOICE, language="auto", use_itn=False))
    itn = engine.transcribe(AsrRequest(audio, mode=SENSEVOICE, language="auto", use_itn=True))
    english = engine.transcribe(AsrRequest(audio, mode=SENSEVOICE, language="en"))
    for result in (plain, itn, english):
        assert result.text and "<|" not in result.text
        assert result.emotion is not None and result.event is not None
        assert result.tokens == ()  # SenseVoice timestamps are off by default
    assert (plain.itn, itn.itn) == (False, True)
    assert plain.text != itn.text
    assert plain.language.code == "zh" and english.language.code == "en"
    assert english.language.display_name == "英文"


def test_wrong_mode_and_empty_audio_are_refused(layout):
    dirs = ModelDirs(sensevoice=layout.sensevoice.path)
    engine = load_engine(dirs, (SENSEVOICE,), AsrOptions(threads=1))
    assert engine.check_mode(None) == SENSEVOICE
    with pytest.raises(WrongMode, match="sensevoice"):
        engine.check_mode(PARAFORMER)
    with pytest.raises(InvalidInput):
        engine.transcribe(AsrRequest(np.zeros(0, np.float32), mode=SENSEVOICE))
    assert engine.random_weights


@pytest.mark.parametrize("remap_min_bytes", [None, 0])
def test_int8_engine_quantizes_every_linear_and_keeps_large_tensors_mapped(layout, monkeypatch,
                                                                          remap_min_bytes):
    """ASR_INT8: every nn.Linear of Paraformer, CT-punc and SenseVoice is dynamic int8 and the
    pipelines still run. Large float tensors (the full CT-punc embedding; with the threshold
    at 0 here, every one) come from a fresh mapping of the checkpoint with its exact values."""
    import services.common.quantize as quantize_module
    from services.funasr.lean_loading import load_state_dict_mmap

    if remap_min_bytes is not None:
        monkeypatch.setattr(quantize_module, "REMAP_MIN_BYTES", remap_min_bytes)
    dirs = ModelDirs(paraformer=layout.paraformer.path, fsmn_vad=layout.fsmn_vad.path,
                     ct_punc=layout.ct_punc.path, sensevoice=layout.sensevoice.path)
    threads = torch.get_num_threads()
    try:
        engine = load_engine(dirs, (PARAFORMER, SENSEVOICE),
                             AsrOptions(threads=1, max_segment_s=6.0, quantize_int8=True))
    finally:
        torch.set_num_threads(threads)
    for automodel in (engine.automodels[name] for name in ("paraformer", "ct_punc", "sensevoice")):
        net = automodel.model
        assert not any(type(m) is torch.nn.Linear for m in net.modules())
        assert any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in net.modules())
    checkpoint = load_state_dict_mmap(engine.automodels["ct_punc"].kwargs["init_param"])
    assert torch.equal(engine.automodels["ct_punc"].model.embed.weight, checkpoint["embed.weight"])
    audio, _ = read_clip("zh_weather")
    result = engine.transcribe(AsrRequest(audio[8000:102990], mode=PARAFORMER))
    assert result.text and set(result.text) & PUNCTUATION, result.text
    sensevoice = engine.transcribe(AsrRequest(audio[8000:102990], mode=SENSEVOICE))
    assert sensevoice.language is not None and "<|" not in sensevoice.text


def test_skip_init_loading_gives_the_old_loaders_outputs(layout):
    """Building the models without random init (#21, what lean loading does now) changes no
    weight and no output: every tensor equals the old lean loader's (random init, then the
    checkpoint) and FunASR's own loader's, and int8 engines loaded both ways transcribe alike."""
    from services.funasr.automodel import load_automodel
    from services.funasr import automodel as automodel_module

    for directory in (layout.paraformer.path, layout.ct_punc.path, layout.sensevoice.path):
        skip = load_automodel(directory, threads=1, lean=True).model.state_dict()
        funasr = load_automodel(directory, threads=1, lean=False).model.state_dict()
        assert skip.keys() == funasr.keys()
        for key in skip:
            assert torch.equal(skip[key], funasr[key]), (directory.name, key)

    dirs = ModelDirs(paraformer=layout.paraformer.path, fsmn_vad=layout.fsmn_vad.path,
                     ct_punc=layout.ct_punc.path, sensevoice=layout.sensevoice.path)
    options = AsrOptions(threads=1, max_segment_s=6.0, quantize_int8=True)
    audio, _ = read_clip("zh_weather")
    requests = [AsrRequest(audio[8000:102990], mode=PARAFORMER), AsrRequest(audio[8000:102990], mode=SENSEVOICE)]
    threads = torch.get_num_threads()
    try:
        new = load_engine(dirs, (PARAFORMER, SENSEVOICE), options)
        new_results = [new.transcribe(r) for r in requests]
        original = automodel_module.lean_checkpoint_loading
        automodel_module.lean_checkpoint_loading = lambda mmap=True: original(mmap=mmap, skip_init=False)
        try:
            old = load_engine(dirs, (PARAFORMER, SENSEVOICE), options)
        finally:
            automodel_module.lean_checkpoint_loading = original
        old_results = [old.transcribe(r) for r in requests]
    finally:
        torch.set_num_threads(threads)
    for got, expected in zip(new_results, old_results):
        assert got.text and got.text == expected.text
        assert got.tokens == expected.tokens


def test_skip_random_init_only_inside_the_block():
    from services.funasr.lean_loading import skip_random_init

    with skip_random_init():
        untouched = torch.nn.init.normal_(torch.full((4,), 7.0))
    assert torch.equal(untouched, torch.full((4,), 7.0))
    assert not torch.equal(torch.nn.init.normal_(torch.full((4,), 7.0)), torch.full((4,), 7.0))
