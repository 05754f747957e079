"""Seconds until each page of the dashboard settles on its first visit, each on a freshly started server.

"First visit": a new `streamlit run app.py` with an empty home folder (no caches, no models of yours), one headless
Chromium tab opened on the page, timed from the request until the page's script has finished (Streamlit's
script state "notRunning") with no exception on the page: "settled", the page usable. A page whose slow part is
computed in the background shows a placeholder there; "complete" is when the last placeholder has gone and the
page has settled again. The baseline, measured the same way in the same run, is a one-line Streamlit app. The
issue's budget is 5 s per page on an idle 2-core CPU.
"From the Models page": the same fresh server opened at its home page (what `streamlit run app.py` shows first),
then the page's link clicked 5 s after that has settled (the start-up warm-up is meant for this); timed from the
click.
Usage: python -m benchmarks.first_visit [PAGE ...] [--repeat N]   (url paths; default: every page)
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from statistics import median

from playwright.sync_api import sync_playwright

from app_pages.background import PENDING
from benchmarks.study_load import CHROMIUM, CHROMIUM_ARGS, start_streamlit
from gradviz.machine import cpu_name

PAGES = {"": "Models", "saliency": "Saliency", "sanity": "Sanity checks", "interpretability": "Interpretability",
         "attack_lab": "Attack lab", "grids": "Target grids", "robustness": "Robustness", "train": "Train",
         "bring": "Your model & data", "annotate": "Teach it where not to look", "experiments": "Experiments",
         "study": "Study", "researcher": "Researcher"}  # url path → the page's heading
BUDGET_S = 5.0
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"  # the page's script has finished
READING_S = 5.0  # how long the person of `from_home` looks at the Models page before clicking
HELLO = "import streamlit as st\nst.title('hello')\n"


def settle_seconds(page, start: float) -> tuple[float, float]:
    """Seconds since `start` until the page's script has finished, and until its last background placeholder has
    gone; raises if the page shows an exception."""
    page.locator(IDLE).wait_for(state="attached", timeout=300_000)
    settled = time.perf_counter() - start
    wait_for_background(page)
    complete = time.perf_counter() - start
    if page.locator("[data-testid='stException']").count():
        raise RuntimeError(f"{page.url} shows an exception")
    return settled, complete


def wait_for_background(page) -> None:
    """Until the page's background computations have drawn their results: no placeholder left, the page idle."""
    placeholder = page.get_by_text(PENDING)
    while placeholder.count():
        placeholder.first.wait_for(state="detached", timeout=300_000)
        page.locator(IDLE).wait_for(state="attached", timeout=300_000)


def open_page(url: str, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(url, wait_until="domcontentloaded")
    page.locator("[data-testid='stApp'][data-test-connection-state='CONNECTED']").wait_for(state="attached",
                                                                                           timeout=60_000)
    return page


def fresh_server(app: str = "app.py"):
    """A new `streamlit run` with an empty home folder; (process, url, home folder to remove)."""
    home = tempfile.TemporaryDirectory()
    env = {**os.environ, "GRADVIZ_HOME": home.name, "GRADVIZ_DB_URL": f"sqlite:///{home.name}/study.sqlite"}
    proc, url = start_streamlit(env, app=app)
    return proc, url, home


def stop(proc, home) -> None:
    proc.terminate()
    proc.wait(timeout=20)
    home.cleanup()


def first_visit(path: str, browser, app: str = "app.py") -> tuple[float, float]:
    """The page's URL typed into a fresh server: nothing imported or computed yet."""
    proc, url, home = fresh_server(app)
    try:
        start = time.perf_counter()
        page = open_page(f"{url}/{path}", browser)
        times = settle_seconds(page, start)
        page.close()
        return times
    finally:
        stop(proc, home)


def from_home(path: str, browser) -> tuple[float, float]:
    """What `streamlit run app.py` shows first is the Models page; a person reads it for READING_S, then clicks the
    page's link in the navigation: timed from the click."""
    proc, url, home = fresh_server()
    try:
        page = open_page(url, browser)
        settle_seconds(page, time.perf_counter())
        page.wait_for_timeout(READING_S * 1000)
        start = time.perf_counter()
        page.locator(f"[data-testid='stSidebarNav'] a[href$='/{path}']").first.click()
        page.get_by_role("heading", name=PAGES[path]).first.wait_for(timeout=300_000)
        times = settle_seconds(page, start)
        page.close()
        return times
    finally:
        stop(proc, home)


def main(paths: list[str], repeat: int = 1) -> None:
    """One table row per page; with `repeat` > 1 each number is the median of that many fresh servers (first visits
    on 2 cores vary by a second or more from one server to the next)."""
    with sync_playwright() as p, tempfile.TemporaryDirectory() as tmp:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        hello = Path(tmp) / "hello.py"
        hello.write_text(HELLO)
        base = median(first_visit("", browser, app=str(hello))[0] for _ in range(repeat))
        print(f"{cpu_name()}, {os.cpu_count()} cores; a hello-world app settles in {base:.2f} s; "
              f"{'median of ' + str(repeat) if repeat > 1 else 'one'} fresh server(s) a number")
        print("| page | URL typed: settled (s) | within 5 s | complete (s) | from the Models page: settled (s) | "
              "complete (s) |\n|---|---|---|---|---|---|")
        for path in paths:
            typed = [first_visit(path, browser) for _ in range(repeat)]
            clicked = [from_home(path, browser) for _ in range(repeat)] if path else typed
            settled, complete = (median(t[i] for t in typed) for i in (0, 1))
            print(f"| {path or 'models'} | {settled:.2f} | {'yes' if settled <= BUDGET_S else 'no'} | "
                  f"{complete:.2f} | {median(c[0] for c in clicked):.2f} | {median(c[1] for c in clicked):.2f} |",
                  flush=True)
        browser.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pages", nargs="*", help="url paths (default: every page; '' is the Models page)")
    parser.add_argument("--repeat", type=int, default=1, help="fresh servers per number (their median)")
    args = parser.parse_args()
    main(args.pages or list(PAGES), args.repeat)
