"""The browser page in real headless Chromium (Debian's), driven by Playwright.

A fake microphone plays clips of ../shared/audio in real time. The page is tested over
HTTPS with the gateway's own certificate and token, at desktop and phone sizes, with the
microphone denied and from an insecure origin; every test fails on console errors.
Screenshots go to test-artifacts/ (docs/web-desktop.png and docs/web-phone.png are copies).
"""

from __future__ import annotations

import os
import shutil

import pytest

from tests.conftest import SHARED_AUDIO
from tests.procs import ROOT, free_port, start_server
from tests.test_gateway_limits import self_signed

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = ROOT / "test-artifacts"
TOKEN = "page-token"
BASE_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--autoplay-policy=no-user-gesture-required"]

if CHROMIUM is None and os.environ.get("CI") != "true":
    pytest.skip("chromium not installed (scripts/test.sh installs it)", allow_module_level=True)


@pytest.fixture(scope="module")
def tls_web_gateway(stack, tmp_path_factory):
    """The whole stack behind a gateway with TLS and a token: the page is served over HTTPS."""
    cert, key = self_signed(tmp_path_factory.mktemp("web-tls"))
    web_port = free_port()
    server = start_server("gateway.server", "gateway-web-tls", tls_root_cert=cert.read_bytes(), env={
        "VAD_ADDRESS": stack.vad.address, "ASR_ADDRESS": stack.asr.address, "EMOTION_ADDRESS": stack.emotion.address,
        "WEB_PORT": str(web_port), "TLS_CERT": str(cert), "TLS_KEY": str(key), "AUTH_TOKEN": TOKEN})
    server.web_port = web_port
    yield server
    server.stop()


@pytest.fixture(scope="module")
def plain_web_gateway():
    """A plain-HTTP web port, reachable under the name gateway.test (mapped to 127.0.0.1 in
    Chromium): an insecure origin, as when the page is opened from another machine."""
    web_port = free_port()
    server = start_server("gateway.server", "gateway-web-plain", wait_serving=False, env={
        "VAD_ADDRESS": "127.0.0.1:9", "ASR_ADDRESS": "127.0.0.1:9", "EMOTION_ADDRESS": "127.0.0.1:9",
        "WEB_PORT": str(web_port), "WEB_ALLOWED_ORIGINS": f"http://gateway.test:{web_port}"})
    server.web_port = web_port
    yield server
    server.stop()


@pytest.fixture()
def chromium():
    from playwright.sync_api import sync_playwright

    assert CHROMIUM, "chromium is required in CI (scripts/test.sh installs it)"

    def launch(*extra: str):
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[*BASE_ARGS, *extra])
        browsers.append(browser)
        return browser

    browsers = []
    with sync_playwright() as playwright:
        yield launch
        for browser in browsers:
            browser.close()


def _watch(page) -> list[str]:
    """Console errors and uncaught exceptions of ``page``, as they happen."""
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
    return problems


def _layout(page) -> dict:
    return page.evaluate("""() => {
        const rect = (e) => e.getBoundingClientRect();
        const tracks = [...document.querySelectorAll('#summary .track')].map(rect);
        return {overflow: document.documentElement.scrollWidth - window.innerWidth,
                trackLefts: tracks.map((r) => Math.round(r.left)),
                trackRights: tracks.map((r) => r.right),
                blocks: [...document.querySelectorAll('#timeline .block:not(.open)')].map(rect)
                        .map((r) => [r.left, r.right]),
                timeline: [rect(document.getElementById('timeline')).left,
                           rect(document.getElementById('timeline')).right],
                viewport: window.innerWidth};
    }""")


def test_a_session_over_https_at_desktop_and_phone_sizes(chromium, tls_web_gateway, manifest):
    clip = manifest["en_meeting"]  # three segments in 10.5 s of real time
    browser = chromium("--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                       f"--use-file-for-fake-audio-capture={SHARED_AUDIO / clip['file']}%noloop")
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems = _watch(page)
    page.goto(f"https://localhost:{tls_web_gateway.web_port}/")
    assert page.evaluate("window.isSecureContext")
    page.fill("#token", TOKEN)
    page.click("#connect")
    page.wait_for_function("document.getElementById('status').textContent === 'connected'")
    page.click("#start")
    page.wait_for_function("document.getElementById('status').textContent === 'recording'")
    # Live text while a segment is open (interim results), then every final result.
    page.wait_for_function("document.getElementById('live').textContent.length > 0", timeout=20000)
    page.wait_for_function(f"window.analysis.segments.length >= {len(clip['segments'])}",
                           timeout=(clip["duration"] + 20) * 1000)
    page.click("#stop")
    page.wait_for_function("window.analysis.closed === true", timeout=30000)
    analysis = page.evaluate("window.analysis")
    assert analysis["problem"] is None and analysis["summary"] is not None, analysis["events"][-3:]
    assert len(analysis["segments"]) == len(clip["segments"]) == int(analysis["summary"]["segmentCount"])
    assert any("interimResult" in e for e in analysis["events"])
    assert all(s.get("text") and s.get("emotions") for s in analysis["segments"])
    assert page.locator("#segments .segment").count() == len(clip["segments"])

    # The timeline: one block per segment, in order, placed by time within the axis.
    desktop = _layout(page)
    blocks = desktop["blocks"]
    assert len(blocks) == len(clip["segments"])
    assert all(a[1] <= b[0] + 1 for a, b in zip(blocks, blocks[1:])), blocks
    left, right = desktop["timeline"]
    audio_ms = int(analysis["summary"]["audioDurationMs"])
    for (x0, _), segment in zip(blocks, analysis["segments"]):
        expected = left + (right - left) * int(segment["startMs"]) / audio_ms
        assert abs(x0 - expected) <= 2, (x0, expected)
    shares = analysis["summary"]["emotionDistribution"]
    assert len(desktop["trackLefts"]) == len(shares) and len(set(desktop["trackLefts"])) == 1
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "web-desktop.png"), full_page=True)

    # Phone width: nothing wider than the screen, the chart's bars still share one left edge.
    page.set_viewport_size({"width": 390, "height": 844})
    phone = _layout(page)
    assert phone["overflow"] <= 0, phone
    assert len(set(phone["trackLefts"])) == 1 and max(phone["trackRights"]) <= phone["viewport"], phone
    page.screenshot(path=str(ARTIFACTS / "web-phone.png"), full_page=True)
    assert problems == []


def test_a_denied_microphone_is_explained(chromium, tls_web_gateway):
    """No permission granted (no fake-UI flag): getUserMedia is refused."""
    browser = chromium("--use-fake-device-for-media-stream")
    page = browser.new_context(ignore_https_errors=True).new_page()
    problems = _watch(page)
    page.goto(f"https://localhost:{tls_web_gateway.web_port}/")
    page.fill("#token", TOKEN)
    page.click("#connect")
    page.wait_for_function("document.getElementById('status').textContent === 'connected'")
    page.click("#start")
    page.wait_for_function("window.analysis.problem !== null", timeout=20000)
    status = page.locator("#status")
    assert "denied" in status.text_content() and "Allow the microphone" in status.text_content()
    assert "problem" in status.get_attribute("class")
    assert page.locator("#start").is_enabled()  # the user can try again
    assert problems == []


def test_an_insecure_origin_is_explained(chromium, plain_web_gateway):
    """http:// from a name other than localhost is not a secure context: no microphone API."""
    browser = chromium("--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                       "--host-resolver-rules=MAP gateway.test 127.0.0.1")
    page = browser.new_page()
    problems = _watch(page)
    page.goto(f"http://gateway.test:{plain_web_gateway.web_port}/")
    assert page.evaluate("window.isSecureContext") is False
    page.click("#connect")
    page.wait_for_function("document.getElementById('status').textContent === 'connected'")
    page.click("#start")
    page.wait_for_function("window.analysis.problem !== null", timeout=10000)
    text = page.locator("#status").text_content()
    assert "secure page" in text and "https://" in text and "TLS_CERT" in text
    assert problems == []


@pytest.fixture(scope="module")
def tls_speaker_gateway(stack, model_env, tmp_path_factory):
    """Like tls_web_gateway, with a speaker worker behind it (speaker labels available)."""
    speaker = start_server("services.speaker.server", "web-speaker", env=model_env)
    cert, key = self_signed(tmp_path_factory.mktemp("web-speaker-tls"))
    web_port = free_port()
    server = start_server("gateway.server", "gateway-web-speaker", tls_root_cert=cert.read_bytes(), env={
        "VAD_ADDRESS": stack.vad.address, "ASR_ADDRESS": stack.asr.address, "EMOTION_ADDRESS": stack.emotion.address,
        "SPEAKER_ADDRESS": speaker.address, "WEB_PORT": str(web_port), "TLS_CERT": str(cert), "TLS_KEY": str(key),
        "AUTH_TOKEN": TOKEN}, serving_service="speaker")
    server.web_port = web_port
    yield server
    server.stop()
    speaker.stop()


def _record(chromium, gateway, clip: dict, speakers: bool):
    """Open the page, tick Speakers if asked, record ``clip`` from the fake microphone."""
    browser = chromium("--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                       f"--use-file-for-fake-audio-capture={SHARED_AUDIO / clip['file']}%noloop")
    page = browser.new_context(ignore_https_errors=True).new_page()
    problems = _watch(page)
    page.goto(f"https://localhost:{gateway.web_port}/")
    page.fill("#token", TOKEN)
    if speakers:
        page.check("#speakers")
    page.click("#connect")
    page.wait_for_function("document.getElementById('status').textContent === 'connected'")
    page.click("#start")
    return page, problems


def test_speaker_labels_on_the_page(chromium, tls_speaker_gateway, manifest):
    clip = manifest["zh_service"]
    page, problems = _record(chromium, tls_speaker_gateway, clip, speakers=True)
    page.wait_for_function(f"window.analysis.segments.length >= {len(clip['segments'])}",
                           timeout=(clip["duration"] + 20) * 1000)
    page.click("#stop")
    page.wait_for_function("window.analysis.closed === true", timeout=30000)
    analysis = page.evaluate("window.analysis")
    assert analysis["problem"] is None, analysis["events"][-3:]
    segments = analysis["segments"]
    labels = [int(s.get("speaker", 0)) for s in segments]
    # A live microphone on a busy host may add a short blip: only a segment under 1 s (or one
    # whose speaker part failed, saying so) may stay unlabelled.
    for segment, label in zip(segments, labels):
        if not label:
            assert (int(segment["endMs"]) - int(segment["startMs"]) < 1000
                    or any(e.startswith("speaker") for e in segment.get("errors", []))), segment
    assert [label for label in labels if label][:1] == [1]
    metas = page.locator("#segments .segment .meta").all_text_contents()
    assert all((f"说话人 {label}" in meta) == bool(label) for label, meta in zip(labels, metas)), metas
    lines = page.locator("#summary .speaker").all_text_contents()
    assert [line.split(":")[0] for line in lines] == [f"说话人 {n}" for n in sorted(set(labels) - {0})]
    assert problems == []


def test_speakers_without_a_speaker_worker_are_explained(chromium, tls_web_gateway, manifest):
    page, problems = _record(chromium, tls_web_gateway, manifest["zh_single"], speakers=True)
    page.wait_for_function("window.analysis.problem !== null", timeout=20000)
    text = page.locator("#status").text_content()
    assert "FAILED_PRECONDITION" in text and "SPEAKER_ADDRESS" in text, text
    assert problems == []
