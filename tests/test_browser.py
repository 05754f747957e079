"""Real-browser smoke test: Playwright drives Debian's Chromium against `streamlit run app.py` on localhost."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PAGES = {"": "Models", "saliency": "Saliency", "attack_lab": "Attack lab", "robustness": "Robustness",
         "train": "Train"}

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists() and os.environ.get("CI") != "true",
                                reason="Debian's chromium is not installed (CI installs it)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = _free_port()
    env = {**os.environ, "GRADVIZ_HOME": str(tmp_path_factory.mktemp("home"))}
    env.pop("GRADVIZ_USER_MODELS", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.address",
         "127.0.0.1", "--server.port", str(port), "--server.fileWatcherType", "none",
         "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            time.sleep(0.3)
    else:
        proc.kill()
        pytest.fail(f"streamlit did not start: {proc.stderr.read().decode()[-2000:]}")
    yield url
    proc.terminate()
    proc.wait(timeout=20)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        yield b
        b.close()


def wait_for_app(page) -> None:
    page.locator("[data-testid='stApp'][data-test-connection-state='CONNECTED']").wait_for(state="attached")
    page.locator("[data-testid='stApp'][data-test-script-state='notRunning']").wait_for(state="attached",
                                                                                           timeout=90_000)


@pytest.mark.parametrize("path,title", list(PAGES.items()))
def test_each_page_opens_without_an_error(server, browser, path, title):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{server}/{path}", wait_until="domcontentloaded")
    wait_for_app(page)
    page.get_by_role("heading", name=title).first.wait_for(timeout=30_000)
    assert page.locator("[data-testid='stException']").count() == 0
    assert page.get_by_text("Traceback").count() == 0
    if os.environ.get("GRADVIZ_SCREENSHOTS"):
        page.wait_for_timeout(1500)
        page.screenshot(path=str(Path(os.environ["GRADVIZ_SCREENSHOTS"]) / f"{path or 'models'}.png"),
                        full_page=True)
    page.close()


def test_navigation_keeps_the_selected_image(server, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{server}/saliency", wait_until="domcontentloaded")
    wait_for_app(page)
    slider = page.get_by_role("slider").first
    slider.focus()
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    wait_for_app(page)
    page.get_by_text("test sample #3").first.wait_for(timeout=30_000)
    page.get_by_role("link", name="Attack lab").click()
    wait_for_app(page)
    page.get_by_text("test sample #3").first.wait_for(timeout=30_000)
    page.close()
