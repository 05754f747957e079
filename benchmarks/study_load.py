"""Many participants at once through the real server: Streamlit replicas (optionally behind Caddy) driven by
concurrent headless-Chromium contexts, each from consent to the completion code.

Used by tests/study/test_study_load.py (few participants, short think time) and, as a benchmark, from the command line:

    python -m benchmarks.study_load --participants 30                    # real Chromium pages
    python -m benchmarks.study_load --participants 30 --client protocol  # the server alone, no browsers

which prints p50/p95 answer latency (click to the next image rendered; with the protocol client, request to the
new page and its images received), the server's share of it and CPU per answer (server and whole machine),
beside the same numbers for a single participant measured in the same run (the baseline).
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import os
import random
import shutil
import socket
import ssl
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


def wait_healthy(url: str, proc: subprocess.Popen, seconds: float = 60, cafile: Path | None = None) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            context = ssl.create_default_context(cafile=str(cafile)) if cafile and cafile.is_file() else None
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2, context=context).read() == b"ok":
                return
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"{proc.args[0]} did not become healthy at {url}: {proc.stderr.read().decode()[-2000:]}")


def start_streamlit(env: dict, port: int | None = None, app: str = "app.py") -> tuple[subprocess.Popen, str]:
    """`streamlit run app.py` (or another script) on localhost; returns once /_stcore/health answers ok."""
    port = port or free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", app, "--server.headless", "true", "--server.address",
         "127.0.0.1", "--server.port", str(port), "--server.fileWatcherType", "none",
         "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, proc)
    return proc, url


def caddy_root_certificate(workdir: Path) -> Path:
    """The root of the internal CA with which Caddy signs https://localhost (made on its first start)."""
    return workdir / "caddy" / "pki" / "authorities" / "local" / "root.crt"


def start_caddy(upstreams: list[str], workdir: Path) -> tuple[subprocess.Popen, str]:
    """deploy/Caddyfile in front of the given replica URLs, on a free port, over HTTPS with Caddy's internal CA
    (health is checked against that CA's root, not by turning verification off)."""
    port = free_port()
    env = {**os.environ, "GRADVIZ_PROXY_PORT": str(port), "XDG_DATA_HOME": str(workdir),
           "XDG_CONFIG_HOME": str(workdir), "GRADVIZ_SITE": "localhost", "GRADVIZ_BIND": "127.0.0.1",
           "GRADVIZ_REPLICAS": " ".join(u.removeprefix("http://") for u in upstreams)}
    proc = subprocess.Popen(["caddy", "run", "--config", str(ROOT / "deploy" / "Caddyfile"), "--adapter", "caddyfile"],
                            cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"https://localhost:{port}"
    deadline = time.time() + 30
    while not caddy_root_certificate(workdir).is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    wait_healthy(url, proc, cafile=caddy_root_certificate(workdir))
    return proc, url


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu_seconds() -> float:
    """Busy CPU time of the whole machine (every core, user + system), from /proc/stat: with the server's own
    share subtracted, what the browsers cost."""
    user, nice, system = (int(v) for v in Path("/proc/stat").read_text().split()[1:4])
    return (user + nice + system) / os.sysconf("SC_CLK_TCK")


@dataclass
class Participant:
    pid: str
    latencies: list[float] = field(default_factory=list)  # seconds from click to the next image rendered
    frames: list[tuple[str, float]] = field(default_factory=list)  # ("rerun" | "finished", network timestamp)
    trials_from: int = 0  # index into frames where the trials began
    acknowledged: int = 0  # answers whose next screen appeared
    completed: bool = False


async def wait_for_app(page) -> None:
    await page.locator("[data-testid='stApp'][data-test-connection-state='CONNECTED']").wait_for(state="attached")
    await page.locator("[data-testid='stApp'][data-test-script-state='notRunning']").wait_for(
        state="attached", timeout=90_000)


async def start(page, url: str, pid: str) -> None:
    await page.goto(f"{url}/study?pid={pid}", wait_until="domcontentloaded", timeout=90_000)
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
        await page.get_by_test_id("stRadioGroup").get_by_text("5", exact=True).click()
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


def frame_kind(payload: str, opcode: int, sent: bool) -> str | None:
    """'rerun' for a BackMsg that reruns the script, 'finished' for the ForwardMsg that ends a run."""
    if opcode != 2:  # Streamlit's messages are binary protobuf frames
        return None
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    raw = base64.b64decode(payload)
    if sent:
        return "rerun" if BackMsg.FromString(raw).WhichOneof("type") == "rerun_script" else None
    return "finished" if ForwardMsg.FromString(raw).WhichOneof("type") == "script_finished" else None


async def watch_websocket(context, page, who: Participant) -> None:
    """Record the WebSocket frames' timestamps as Chromium's network stack saw them (DevTools protocol), so the
    server's share of each answer can be told apart from the time the browser took to render."""
    cdp = await context.new_cdp_session(page)

    def record(event: dict, sent: bool) -> None:
        kind = frame_kind(event["response"]["payloadData"], event["response"]["opcode"], sent)
        if kind:
            who.frames.append((kind, event["timestamp"]))

    cdp.on("Network.webSocketFrameSent", lambda e: record(e, True))
    cdp.on("Network.webSocketFrameReceived", lambda e: record(e, False))
    await cdp.send("Network.enable")


def server_latencies(who: Participant) -> list[float]:
    """Per answer: from the rerun request leaving the browser to the run's last message arriving."""
    out, pending = [], None
    for kind, stamp in who.frames[who.trials_from:]:
        if kind == "rerun":
            pending = stamp
        elif pending is not None:
            out.append(stamp - pending)
            pending = None
    return out


async def run_participant(browser, url: str, who: Participant, think: tuple[float, float], answers: int | None,
                          rng: random.Random, arrival: float = 0.0) -> tuple:
    """One participant in their own browser context, arriving within `arrival` seconds of the start; stops after
    `answers` answers (None: to the end)."""
    await asyncio.sleep(rng.uniform(0, arrival))
    context = await browser.new_context()
    page = await context.new_page()
    await watch_websocket(context, page, who)
    await start(page, url, who.pid)
    who.trials_from = len(who.frames)
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


async def run_study(url: str, pids: list[str], think: tuple[float, float] = (2.0, 4.0), seed: int = 0,
                    arrival: float = 0.0) -> list[Participant]:
    """All participants concurrently (arriving within `arrival` seconds), each from consent to the completion
    code."""
    from playwright.async_api import async_playwright

    rng = random.Random(seed)
    people = [Participant(p) for p in pids]
    async with async_playwright() as p:
        browser = await chromium(p)
        sessions = await asyncio.gather(*(run_participant(browser, url, w, think, None, random.Random(rng.random()),
                                                          arrival) for w in people))
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


async def run_protocol_study(url: str, pids: list[str], think: tuple[float, float], seed: int = 0,
                             arrival: float = 0.0) -> list[Participant]:
    """The same study with protocol-level participants (benchmarks.protocol_participant): no browsers."""
    from benchmarks.protocol_participant import run_protocol_participant

    rng = random.Random(seed)
    people = [Participant(p) for p in pids]
    await asyncio.gather(*(run_protocol_participant(url, w, think, random.Random(rng.random()), arrival,
                                                    COMPLETION_CODE) for w in people))
    return people


def measure(url: str, server_pid: int, pids: list[str], think: tuple[float, float], arrival: float = 0.0,
            client: str = "browser") -> dict:
    before, machine_before = cpu_seconds(server_pid), machine_cpu_seconds()
    started = time.perf_counter()
    study = run_study if client == "browser" else run_protocol_study
    people = asyncio.run(study(url, pids, think, arrival=arrival))
    latencies = [t for w in people for t in w.latencies]
    server = [t for w in people for t in server_latencies(w)] or latencies
    answers = sum(w.acknowledged for w in people)
    server_cpu = cpu_seconds(server_pid) - before
    return {"server_p50": percentile(server, 50), "server_p95": percentile(server, 95),
            "participants": len(pids), "answers": answers, "completed": sum(w.completed for w in people),
            "p50": percentile(latencies, 50), "p95": percentile(latencies, 95), "max": max(latencies),
            "cpu_per_answer": server_cpu / answers,
            "machine_cpu_per_answer": (machine_cpu_seconds() - machine_before) / answers,
            "seconds": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--participants", type=int, default=30)
    parser.add_argument("--items", type=int, default=6, help="items per participant (plus 6 pairs, 2 checks)")
    parser.add_argument("--think", default="2,4", help="seconds a participant looks before answering (uniform)")
    parser.add_argument("--client", choices=["browser", "protocol"], default="browser",
                        help="browser: headless Chromium pages (the browsers' CPU counts); protocol: Streamlit's "
                        "WebSocket protocol spoken directly (the server alone)")
    parser.add_argument("--arrival", type=float, default=30.0,
                        help="participants arrive uniformly within this many seconds (a Prolific batch: minutes)")
    args = parser.parse_args()
    think = tuple(float(v) for v in args.think.split(","))
    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, "GRADVIZ_HOME": folder, "GRADVIZ_DB_URL": study_database(Path(folder), args.items)}
        proc, url = start_streamlit(env)
        try:
            base = measure(url, proc.pid, ["baseline-0"], think, client=args.client)
            load = measure(url, proc.pid, [f"load-{i}" for i in range(args.participants)], think, args.arrival,
                           args.client)
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    if args.client == "browser":
        print("seconds; latency = click to the next image rendered; server = rerun request out to the run's last "
              "message in, at the browser's network layer")
    else:
        print("seconds; latency (= server) = rerun request sent to the run's last message and the new images "
              "received, protocol client")
    print(f"{'':18s}{'p50':>7s}{'p95':>7s}{'max':>7s}{'server p50':>12s}{'server p95':>12s}"
          f"{'server CPU/answer':>19s}{'machine CPU/answer':>20s}{'answers':>9s}")
    for name, r in (("1 participant", base), (f"{args.participants} participants", load)):
        print(f"{name:18s}{r['p50']:7.3f}{r['p95']:7.3f}{r['max']:7.3f}{r['server_p50']:12.3f}{r['server_p95']:12.3f}"
              f"{r['cpu_per_answer']:19.3f}{r['machine_cpu_per_answer']:20.3f}{r['answers']:9d}")
    print(f"ratio {args.participants} : 1 — p50 {load['p50'] / base['p50']:.2f}×, p95 {load['p95'] / base['p95']:.2f}×, "
          f"CPU per answer {load['cpu_per_answer'] / base['cpu_per_answer']:.2f}×; "
          f"{load['completed']}/{args.participants} completed; think time {think[0]:g}–{think[1]:g} s, arrivals "
          f"within {args.arrival:g} s; {load['seconds']:.0f} s in all")


if __name__ == "__main__":
    main()
