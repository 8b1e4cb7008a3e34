"""The browser page in real headless Chromium (Debian's), driven by Playwright, with a fake
microphone playing ../shared/audio/zh_weather.wav in real time."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import SHARED_AUDIO
from tests.procs import ROOT, free_port, start_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = ROOT / "test-artifacts"

if CHROMIUM is None and os.environ.get("CI") != "true":
    pytest.skip("chromium not installed (scripts/test.sh installs it)", allow_module_level=True)



@pytest.fixture(scope="module")
def web_gateway(stack):
    web_port = free_port()
    env = {"VAD_ADDRESS": stack.vad.address, "WEB_PORT": str(web_port),
           "ASR_ADDRESS": stack.asr.address, "EMOTION_ADDRESS": stack.emotion.address}
    server = start_server("gateway.server", "gateway-web", env=env)
    server.web_port = web_port
    yield server
    server.stop()


def test_page_records_and_shows_one_result_per_segment(web_gateway, manifest):
    from playwright.sync_api import sync_playwright

    assert CHROMIUM, "chromium is required in CI (scripts/test.sh installs it)"
    clip = manifest["zh_weather"]
    wav = SHARED_AUDIO / clip["file"]
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={wav}%noloop",
            "--autoplay-policy=no-user-gesture-required"])
        try:
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{web_gateway.web_port}/")
            page.click("#connect")
            page.wait_for_function("document.getElementById('status').textContent === 'connected'")
            page.click("#start")
            page.wait_for_function("document.getElementById('status').textContent === 'recording'")
            # The fake microphone plays the clip in real time; wait until its last segment is in.
            page.wait_for_function(
                f"window.analysis.segments.length >= {len(clip['segments'])}",
                timeout=(clip["duration"] + 20) * 1000)
            page.wait_for_timeout(1000)
            page.click("#stop")
            page.wait_for_function("window.analysis.closed === true", timeout=30000)
            analysis = page.evaluate("window.analysis")
            page_blocks = page.locator("#segments .segment").count()
            page.screenshot(path=str(ARTIFACTS / "web_page.png"), full_page=True)
        finally:
            browser.close()
    assert analysis["summary"] is not None, analysis["events"][-3:]
    assert len(analysis["segments"]) == len(clip["segments"])
    assert int(analysis["summary"].get("segmentCount", 0)) == len(clip["segments"])
    shown = [Path(p) for p in ARTIFACTS.glob("web_page.png")]
    assert shown and shown[0].stat().st_size > 10_000
    assert all(s.get("text") and s.get("emotions") for s in analysis["segments"])
    assert page_blocks == len(clip["segments"])  # one rendered block per segment
