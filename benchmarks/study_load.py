"""Many participants at once through the real server: Streamlit replicas (optionally behind Caddy) driven by
concurrent headless-Chromium contexts, each from consent to the completion code.

Used by tests/test_study_load.py (few participants, short think time) and, as a benchmark, from the command line:

    python -m benchmarks.study_load --participants 30

which prints p50/p95 answer latency (click to the next image rendered) and the server's CPU time per answer,
beside the same numbers for a single participant measured in the same run (the baseline).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
COMPLETION_CODE = "LOAD42"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                return
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"{proc.args[0]} did not become healthy at {url}: {proc.stderr.read().decode()[-2000:]}")


def start_streamlit(env: dict, port: int | None = None) -> tuple[subprocess.Popen, str]:
    """`streamlit run app.py` on localhost; returns once /_stcore/health answers ok."""
    port = port or free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.address",
         "127.0.0.1", "--server.port", str(port), "--server.fileWatcherType", "none",
         "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, proc)
    return proc, url


def start_caddy(upstreams: list[str], workdir: Path) -> tuple[subprocess.Popen, str]:
    """deploy/Caddyfile in front of the given replica URLs, on a free port."""
    port = free_port()
    env = {**os.environ, "GRADVIZ_PROXY_PORT": str(port), "XDG_DATA_HOME": str(workdir),
           "XDG_CONFIG_HOME": str(workdir),
           "GRADVIZ_REPLICAS": " ".join(u.removeprefix("http://") for u in upstreams)}
    proc = subprocess.Popen(["caddy", "run", "--config", str(ROOT / "deploy" / "Caddyfile"), "--adapter", "caddyfile"],
                            cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, proc)
    return proc, url


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Participant:
    pid: str
    latencies: list[float] = field(default_factory=list)  # seconds from click to the next image rendered
    acknowledged: int = 0  # answers whose next screen appeared
    completed: bool = False


async def wait_for_app(page) -> None:
    await page.locator("[data-testid='stApp'][data-test-connection-state='CONNECTED']").wait_for(state="attached")
    await page.locator("[data-testid='stApp'][data-test-script-state='notRunning']").wait_for(
        state="attached", timeout=90_000)


async def start(page, url: str, pid: str) -> None:
    await page.goto(f"{url}/study?pid={pid}", wait_until="domcontentloaded")
    await wait_for_app(page)
    await page.get_by_text("I have read the above").click()
    await page.get_by_role("button", name="Start").click()
    await page.get_by_role("button", name="Begin").click(timeout=60_000)
    await page.get_by_test_id("stProgress").wait_for(timeout=60_000)


async def answer_one(page, who: Participant) -> bool:
    """Answer the trial on screen like a person; returns False when the completion code is showing."""
    if await page.get_by_text(COMPLETION_CODE).count():
        return False
    shown = await page.get_by_test_id("stProgress").inner_text()
    number, total = (int(v) for v in shown.split("Image ")[1].split(" of "))
    following = f"Image {number + 1} of {total}" if number < total else COMPLETION_CODE
    if await page.get_by_text("Which looks more like").count():
        button = page.get_by_role("button", name="This one (left)")
    else:
        await page.get_by_test_id("stButtonGroup").get_by_text("3", exact=True).click()
        await page.get_by_test_id("stRadio").get_by_text("5", exact=True).click()
        button = page.get_by_role("button", name="Next")
    clicked = time.perf_counter()
    await button.click()
    await page.get_by_text(following).first.wait_for(timeout=60_000)
    who.latencies.append(time.perf_counter() - clicked)
    who.acknowledged += 1
    await wait_for_app(page)  # the run has finished: the previous trial's stale widgets are gone
    if number == total:
        who.completed = True
        return False
    return True


async def run_participant(browser, url: str, who: Participant, think: tuple[float, float], answers: int | None,
                          rng: random.Random) -> tuple:
    """One participant in their own browser context; stops after `answers` answers (None: to the end)."""
    context = await browser.new_context()
    page = await context.new_page()
    await start(page, url, who.pid)
    while answers is None or who.acknowledged < answers:
        await asyncio.sleep(rng.uniform(*think))
        if not await answer_one(page, who):
            break
    return context, page


async def finish(page, who: Participant, think: tuple[float, float], rng: random.Random) -> None:
    while await answer_one(page, who):
        await asyncio.sleep(rng.uniform(*think))


def chromium(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


async def run_study(url: str, pids: list[str], think: tuple[float, float] = (2.0, 4.0),
                    seed: int = 0) -> list[Participant]:
    """All participants at once, each from consent to the completion code."""
    from playwright.async_api import async_playwright

    rng = random.Random(seed)
    people = [Participant(p) for p in pids]
    async with async_playwright() as p:
        browser = await chromium(p)
        sessions = await asyncio.gather(*(run_participant(browser, url, w, think, None, random.Random(rng.random()))
                                          for w in people))
        for context, _ in sessions:
            await context.close()
        await browser.close()
    return people


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def study_database(folder: Path, n_items: int) -> str:
    """A SQLite study database with a synthetic stimulus set (n_items × 4 models, 2 attention checks)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from study_helpers import install_set, synthetic_rows

    from gradviz.study.db import make_engine, set_setting

    url = f"sqlite:///{folder / 'study.sqlite'}"
    engine = make_engine(url)
    install_set(engine, synthetic_rows(n_items=n_items, n_attention=2))
    set_setting(engine, "completion_code", COMPLETION_CODE)
    engine.dispose()
    return url


def measure(url: str, server_pid: int, pids: list[str], think: tuple[float, float]) -> dict:
    before = cpu_seconds(server_pid)
    started = time.perf_counter()
    people = asyncio.run(run_study(url, pids, think))
    latencies = [t for w in people for t in w.latencies]
    answers = sum(w.acknowledged for w in people)
    return {"participants": len(pids), "answers": answers, "completed": sum(w.completed for w in people),
            "p50": percentile(latencies, 50), "p95": percentile(latencies, 95), "max": max(latencies),
            "cpu_per_answer": (cpu_seconds(server_pid) - before) / answers,
            "seconds": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--participants", type=int, default=30)
    parser.add_argument("--items", type=int, default=6, help="items per participant (plus 6 pairs, 2 checks)")
    parser.add_argument("--think", default="2,4", help="seconds a participant looks before answering (uniform)")
    args = parser.parse_args()
    think = tuple(float(v) for v in args.think.split(","))
    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, "GRADVIZ_HOME": folder, "GRADVIZ_DB_URL": study_database(Path(folder), args.items)}
        proc, url = start_streamlit(env)
        try:
            base = measure(url, proc.pid, ["baseline-0"], think)
            load = measure(url, proc.pid, [f"load-{i}" for i in range(args.participants)], think)
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    print(f"{'':24s}{'p50 (s)':>9s}{'p95 (s)':>9s}{'max (s)':>9s}{'CPU/answer (s)':>16s}{'answers':>9s}")
    for name, r in (("1 participant", base), (f"{args.participants} participants", load)):
        print(f"{name:24s}{r['p50']:9.3f}{r['p95']:9.3f}{r['max']:9.3f}{r['cpu_per_answer']:16.3f}{r['answers']:9d}")
    print(f"ratio {args.participants} : 1 — p50 {load['p50'] / base['p50']:.2f}×, p95 {load['p95'] / base['p95']:.2f}×, "
          f"CPU per answer {load['cpu_per_answer'] / base['cpu_per_answer']:.2f}×; "
          f"{load['completed']}/{args.participants} completed; think time {think[0]:g}–{think[1]:g} s")


if __name__ == "__main__":
    main()
