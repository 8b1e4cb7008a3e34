"""The browser page with nine emotion classes (EMOTION_MODEL=emotion2vec), in headless Chromium.

The fake microphone plays ../shared/audio/zh_single.wav (2 s, one segment) through
a gateway whose emotion worker serves emotion2vec+; the page must colour the
segment by its nine-class label and draw one summary bar per class, labelled
with the Chinese display name.
"""

from __future__ import annotations

import os
import shutil

import pytest

from services.common.emotion_labels import DISPLAY_NAMES, EMOTION2VEC_LABELS
from tests.conftest import SHARED_AUDIO
from tests.procs import free_port, start_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

if CHROMIUM is None and os.environ.get("CI") != "true":
    pytest.skip("chromium not installed (scripts/test.sh installs it)", allow_module_level=True)


@pytest.fixture(scope="module")
def e2v_web_gateway(stack, model_env, tmp_path_factory):
    root = tmp_path_factory.mktemp("e2v-web-root")
    emotion = start_server("services.emotion.server", "web-e2v-emotion", env={
        "MODEL_CACHE_DIR": model_env["MODEL_CACHE_DIR"], "PROJECT_ROOT": str(root), "EMOTION_MODEL": "emotion2vec"})
    web_port = free_port()
    gateway = start_server("gateway.server", "web-e2v-gateway", env={
        "VAD_ADDRESS": stack.vad.address, "ASR_ADDRESS": stack.asr.address, "EMOTION_ADDRESS": emotion.address,
        "WEB_PORT": str(web_port)})
    gateway.web_port = web_port
    yield gateway
    gateway.stop()
    emotion.stop()


def test_page_shows_nine_class_emotions(e2v_web_gateway, manifest):
    from playwright.sync_api import sync_playwright

    assert CHROMIUM, "chromium is required in CI (scripts/test.sh installs it)"
    clip = manifest["zh_single"]
    wav = SHARED_AUDIO / clip["file"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={wav}%noloop",
            "--autoplay-policy=no-user-gesture-required"])
        try:
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{e2v_web_gateway.web_port}/")
            page.click("#connect")
            page.wait_for_function("document.getElementById('status').textContent === 'connected'")
            page.click("#start")
            page.wait_for_function("document.getElementById('status').textContent === 'recording'")
            page.wait_for_function(f"window.analysis.segments.length >= {len(clip['segments'])}",
                                   timeout=(clip["duration"] + 20) * 1000)
            page.click("#stop")
            page.wait_for_function("window.analysis.closed === true", timeout=30000)
            analysis = page.evaluate("window.analysis")
            segment = page.locator("#segments .segment").first
            border = segment.evaluate("e => getComputedStyle(e).borderLeftColor")
            bar_labels = page.locator("#summary .chart .label").all_inner_texts()
        finally:
            browser.close()
    (result,) = analysis["segments"]
    (emotion,) = result["emotions"]
    assert emotion["source"] == "emotion2vec" and emotion["label"] in EMOTION2VEC_LABELS
    # every one of the nine classes has a colour of its own (unknown labels get the default #999)
    assert border != "rgb(153, 153, 153)", (emotion["label"], border)
    shares = analysis["summary"]["emotionDistribution"]
    assert len(shares) > 4 and {s["label"] for s in shares} <= set(EMOTION2VEC_LABELS)
    assert bar_labels == [DISPLAY_NAMES[s["label"]] for s in shares]
