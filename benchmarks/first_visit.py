"""Seconds until each page of the dashboard settles on its first visit, each on a freshly started server.

"First visit": a new `streamlit run app.py` with an empty home folder (no caches, no models of yours), one headless
Chromium tab opened on the page, timed from the request until the page's script has finished (Streamlit's
script state "notRunning") with no exception on the page. The baseline, measured the same way in the same run, is
a one-line Streamlit app. The issue's budget is 5 s per page on an idle 2-core CPU.
Usage: python -m benchmarks.first_visit [PAGE ...]   (url paths; default: every page)
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

from benchmarks.study_load import CHROMIUM, CHROMIUM_ARGS, start_streamlit
from gradviz.machine import cpu_name

PAGES = ["", "saliency", "sanity", "interpretability", "attack_lab", "grids", "robustness", "train", "bring",
         "annotate", "experiments", "study", "researcher"]
BUDGET_S = 5.0
HELLO = "import streamlit as st\nst.title('hello')\n"


def settle_seconds(url: str, browser) -> float:
    """From the request to the script finished; raises if the page shows an exception."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    start = time.perf_counter()
    page.goto(url, wait_until="domcontentloaded")
    page.locator("[data-testid='stApp'][data-test-connection-state='CONNECTED']").wait_for(state="attached",
                                                                                           timeout=60_000)
    page.locator("[data-testid='stApp'][data-test-script-state='notRunning']").wait_for(state="attached",
                                                                                        timeout=300_000)
    elapsed = time.perf_counter() - start
    if page.locator("[data-testid='stException']").count():
        raise RuntimeError(f"{url} shows an exception")
    page.close()
    return elapsed


def first_visit(path: str, browser, app: str = "app.py") -> float:
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "GRADVIZ_HOME": home, "GRADVIZ_DB_URL": f"sqlite:///{home}/study.sqlite"}
        proc, url = start_streamlit(env, app=app)
        try:
            return settle_seconds(f"{url}/{path}", browser)
        finally:
            proc.terminate()
            proc.wait(timeout=20)


def main(paths: list[str]) -> None:
    with sync_playwright() as p, tempfile.TemporaryDirectory() as tmp:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        hello = Path(tmp) / "hello.py"
        hello.write_text(HELLO)
        base = first_visit("", browser, app=str(hello))
        print(f"{cpu_name()}, {os.cpu_count()} cores; a hello-world app settles in {base:.2f} s")
        print("| page | first visit (s) | × hello app | within 5 s |\n|---|---|---|---|")
        for path in paths:
            seconds = first_visit(path, browser)
            print(f"| {path or 'models'} | {seconds:.2f} | {seconds / base:.1f} | "
                  f"{'yes' if seconds <= BUDGET_S else 'no'} |", flush=True)
        browser.close()


if __name__ == "__main__":
    main(sys.argv[1:] or PAGES)
