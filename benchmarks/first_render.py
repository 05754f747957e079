"""Seconds from `streamlit run app.py` to the Models page rendered in headless Chromium, on a fresh start.

The baseline, measured in the same run, is a one-line Streamlit app started and rendered the same way.
Usage: python -m benchmarks.first_render
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def time_to_render(script: Path, port: int, text: str) -> float:
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(script), "--server.headless", "true",
                             "--server.port", str(port), "--server.fileWatcherType", "none"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_page()
            while True:
                try:
                    page.goto(f"http://127.0.0.1:{port}/", timeout=2000)
                    break
                except Exception:
                    time.sleep(0.1)
            page.get_by_text(text).first.wait_for(timeout=60_000)
            page.locator("[data-test-script-state='notRunning']").wait_for(state="attached", timeout=60_000)
            elapsed = time.perf_counter() - start
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    return elapsed


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        hello = Path(tmp) / "hello.py"
        hello.write_text("import streamlit as st\nst.title('hello')\n")
        base = time_to_render(hello, 8631, "hello")
        app = time_to_render(ROOT / "app.py", 8632, "models")
    print(f"fresh start to first render: hello app {base:.2f} s, gradviz Models page {app:.2f} s "
          f"({app / base:.2f}x the hello app)")


if __name__ == "__main__":
    main()
