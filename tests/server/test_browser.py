"""The browser client end to end: headless Chromium (Debian's package, driven by Playwright with the system
browser: no browser download) with a WAV file as the fake microphone, against a loopback server.

Skips cleanly when chromium or playwright is absent (scripts/quickstart.sh test installs both in CI).
IA_BROWSER_SCREENSHOT=PATH also saves the page (docs/images/browser_client.png is made this way with
IA_BROWSER_DEMO=1: the demo checkpoint instead of the cheap numpy backend).
"""

from __future__ import annotations

import os
import shutil

import pytest

from instructavatar.engine.media.audio_io import write_wav

from .conftest import tone

CHROMIUM = os.environ.get("IA_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt-get install chromium)")
def test_browser_page_streams_the_microphone_and_draws_frames(make_server, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed (dev extra)")
    wav = tmp_path / "mic.wav"
    write_wav(wav, tone(3.0, 200, rate=48000), 48000)
    pipeline = None
    if os.environ.get("IA_BROWSER_DEMO"):
        from instructavatar.engine.loader import load_pipeline

        pipeline = load_pipeline("demo", steps=2, threads=2)
    with make_server(pipeline, stats_interval_s=0.5) as srv, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={wav}", "--autoplay-policy=no-user-gesture-required",
            "--no-sandbox"])
        try:
            page = browser.new_page()
            logs = []
            page.on("console", lambda m: logs.append(m.text))
            page.goto(srv.http + "/?autostart=1")
            page.wait_for_function("window.avatarState.framesDrawn >= 10", timeout=60_000)
            state = page.evaluate("window.avatarState")
            errors = [e for e in state["errors"] if not (pipeline is not None and e["code"] == "buffer_full")]
            assert state["ready"]["type"] == "session.ready" and not errors, (state, logs)   # (a slow CPU: full)
            assert state["rate"] > 0 and state["samplesSent"] > 0
            assert state["lastLatencyMs"] is not None
            page.fill("#instruction", "look very sad")
            page.click("#set")
            page.wait_for_function("document.getElementById('status').textContent.includes('look very sad')",
                                   timeout=30_000)
            # a drawn frame is not blank: the canvas holds the avatar's pixels
            spread = page.evaluate("""() => { const c = document.getElementById('avatar');
                const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                let lo = 255, hi = 0;
                for (let i = 0; i < d.length; i += 4) { lo = Math.min(lo, d[i]); hi = Math.max(hi, d[i]); }
                return hi - lo; }""")
            assert spread > 20
            shot = tmp_path / "page.png"
            page.screenshot(path=str(shot))
            assert shot.stat().st_size > 1000
            if os.environ.get("IA_BROWSER_SCREENSHOT"):
                page.screenshot(path=os.environ["IA_BROWSER_SCREENSHOT"])
        finally:
            browser.close()
