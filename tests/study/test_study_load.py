"""The study under load through the real server: concurrent participants in real browser contexts, and two
replicas behind Caddy on one PostgreSQL database with one replica killed mid-study."""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import random
import shutil
import signal
import ssl
import subprocess
import sys
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import text
from study_helpers import engine_for_backend, install_set, synthetic_rows

from benchmarks.study_load import (
    CHROMIUM,
    COMPLETION_CODE,
    Participant,
    caddy_root_certificate,
    chromium,
    finish,
    run_protocol_study,
    run_study,
    start_caddy,
    start_streamlit,
    study_database,
    wait_for_app,
)
from gradviz.study.db import make_engine, set_setting

ROOT = Path(__file__).resolve().parents[2]
needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists() and os.environ.get("CI") != "true",
                                    reason="Debian's chromium is not installed (CI installs it)")


def server_env(home: Path, db_url: str) -> dict:
    env = {**os.environ, "GRADVIZ_HOME": str(home), "GRADVIZ_DB_URL": db_url}
    env.pop("GRADVIZ_USER_MODELS", None)
    return env


def check_database(engine, people: list[Participant]) -> list[dict]:
    """Every acknowledged answer stored exactly once; completion only after the last answer."""
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(text(
            "SELECT p.participant_id, p.slot, p.list_index, p.trials, p.completed_at, "
            "count(r.trial_index) AS answers, count(DISTINCT r.trial_index) AS distinct_answers, "
            "max(r.answered_at) AS last_answer FROM participants p LEFT JOIN responses r "
            "ON r.participant_id = p.participant_id GROUP BY p.participant_id, p.slot, p.list_index, p.trials, "
            "p.completed_at ORDER BY p.slot"))]
    by_id = {r["participant_id"]: r for r in rows}
    for who in people:
        row = by_id[who.pid]
        assert row["answers"] == row["distinct_answers"] >= who.acknowledged
        assert who.completed and row["answers"] == len(json.loads(row["trials"]))
        assert row["completed_at"] is not None and row["completed_at"] >= row["last_answer"]
    return rows


def test_the_participant_path_never_imports_torch(tmp_path):
    """The study page, consent to first answer, in a fresh interpreter: torch stays unimported."""
    url = f"sqlite:///{tmp_path / 'study.sqlite'}"
    install_set(make_engine(url), synthetic_rows(n_items=4, n_attention=1))
    script = """
import sys
from streamlit.testing.v1 import AppTest
at = AppTest.from_file("app.py", default_timeout=60)
at.query_params["pid"] = "light"
at.run()
at.checkbox(key="agree").check().run()
at.button(key="start").click().run()
at.button(key="begin").click().run()
assert not at.exception, at.exception
assert at.get("progress"), "no trial shown"
print(sorted(m for m in ("torch", "captum", "skimage", "gradviz.nets.store") if m in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "GRADVIZ_DB_URL": url, "GRADVIZ_HOME": str(tmp_path)})
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.browser
@pytest.mark.slow
@needs_chromium
def test_concurrent_participants_through_one_server(tmp_path):
    n = 6
    db_url = study_database(tmp_path, n_items=4)
    proc, url = start_streamlit(server_env(tmp_path, db_url))
    try:
        people = asyncio.run(run_study(url, [f"load-{i}" for i in range(n)], think=(0.05, 0.3)))
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    rows = check_database(make_engine(db_url), people)
    assert [r["slot"] for r in rows] == list(range(1, n + 1))
    counts = Counter(r["list_index"] for r in rows)
    assert max(counts.values()) - min(counts.get(k, 0) for k in range(4)) <= 1  # Latin square: lists balanced


@pytest.mark.slow
def test_protocol_participants_through_one_server(tmp_path):
    """The benchmark's browserless participants (Streamlit's WebSocket protocol spoken directly): many at once,
    every answer stored once, every code issued after the last answer."""
    n = 12
    db_url = study_database(tmp_path, n_items=4)
    proc, url = start_streamlit(server_env(tmp_path, db_url))
    try:
        people = asyncio.run(run_protocol_study(url, [f"proto-{i}" for i in range(n)], think=(0.0, 0.1), arrival=1))
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    rows = check_database(make_engine(db_url), people)
    assert [r["slot"] for r in rows] == list(range(1, n + 1))
    assert all(w.acknowledged == len(json.loads(r["trials"])) for w, r in zip(
        sorted(people, key=lambda w: w.pid), sorted(rows, key=lambda r: r["participant_id"])))


EXPLORE_PATHS = ["", "saliency", "attack_lab", "grids", "robustness", "train", "experiments", "models"]


def security_headers(proxy: str, root: Path) -> dict[str, str]:
    """The response headers of the study over HTTPS, verified against Caddy's own root certificate."""
    context = ssl.create_default_context(cafile=str(root))
    with urllib.request.urlopen(f"{proxy}/study", timeout=10, context=context) as response:
        return {k.lower(): v for k, v in response.headers.items()}


async def explore_pages_through(proxy: str) -> dict[str, str]:
    """What a browser shows at each Explore page's address in study mode: the study (without an id in the link, its
    "this link is not valid" page), never the Explore page."""
    from playwright.async_api import async_playwright

    shown = {}
    async with async_playwright() as p:
        browser = await chromium(p)
        context = await browser.new_context(ignore_https_errors=True)
        page = await context.new_page()
        for path in EXPLORE_PATHS:
            await page.goto(f"{proxy}/{path}")
            await wait_for_app(page)
            heading = page.locator("h1").first
            await heading.wait_for(timeout=30_000)
            shown[path] = (await heading.inner_text()).strip()
        await browser.close()
    return shown


def caddy_cookie(upstream: str) -> str:
    """The value Caddy's `lb_policy cookie` (no secret) gives the replica at this dial address."""
    return hmac.new(b"", upstream.encode(), hashlib.sha256).hexdigest()


async def failover(proxy: str, victim: subprocess.Popen, victim_address: str, people: list[Participant]) -> list:
    from playwright.async_api import async_playwright

    rng = random.Random(0)
    async with async_playwright() as p:
        browser = await chromium(p)
        sessions = []
        for i in range(len(people)):  # half of them pinned to the replica that will die
            context = await browser.new_context(ignore_https_errors=True)  # Caddy's internal CA, made for the test
            if i % 2 == 0:
                await context.add_cookies([{"name": "gradviz_replica", "value": caddy_cookie(victim_address),
                                            "url": proxy}])
            sessions.append(context)
        runs = await asyncio.gather(*(run_participant_in(c, proxy, w, rng) for c, w in zip(sessions, people)))
        victim.send_signal(signal.SIGKILL)  # mid-study: no shutdown handlers, no flush
        victim.wait(timeout=10)
        disconnected = 0
        for page in runs:
            disconnected += await page.locator("[data-test-connection-state='CONNECTED']").count() == 0
        for page, who in zip(runs, people):  # they reload and resume at their first unanswered trial
            await page.reload(wait_until="domcontentloaded")
            await wait_for_app(page)
            await page.get_by_text(f"Image {who.acknowledged + 1} of", exact=False).first.wait_for(timeout=60_000)
        await asyncio.gather(*(finish(page, who, (0.05, 0.2), rng) for page, who in zip(runs, people)))
        await browser.close()
    return [disconnected]


async def run_participant_in(context, proxy: str, who: Participant, rng: random.Random):
    from benchmarks.study_load import answer_one, start

    page = await context.new_page()
    await start(page, proxy, who.pid)
    while who.acknowledged < 3:
        await asyncio.sleep(rng.uniform(0.05, 0.2))
        await answer_one(page, who)
    return page


@needs_chromium
@pytest.mark.skipif(shutil.which("caddy") is None and os.environ.get("CI") != "true",
                    reason="caddy is not installed (CI installs it)")
@pytest.mark.browser
@pytest.mark.postgres
@pytest.mark.slow
def test_two_replicas_behind_caddy_survive_a_sigkill(tmp_path):
    engine, db_url = engine_for_backend("postgresql", tmp_path)
    install_set(engine, synthetic_rows(n_items=4, n_attention=1))
    set_setting(engine, "completion_code", COMPLETION_CODE)
    env = {**server_env(tmp_path, db_url), "GRADVIZ_MODE": "study"}  # as deploy/run_replicas.sh runs them
    (a, url_a), (b, url_b) = start_streamlit(env), start_streamlit(env)
    proxy_proc, proxy = start_caddy([url_a, url_b], tmp_path)
    people = [Participant(f"fail-{i}") for i in range(4)]
    try:
        headers = security_headers(proxy, caddy_root_certificate(tmp_path))
        explore_titles = asyncio.run(explore_pages_through(proxy))
        disconnected, = asyncio.run(failover(proxy, a, url_a.removeprefix("http://"), people))
    finally:
        for proc in (a, b, proxy_proc):
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=20)
    assert headers["strict-transport-security"].startswith("max-age=31536000")
    assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff"
    assert set(explore_titles) == set(EXPLORE_PATHS), explore_titles
    assert set(explore_titles.values()) == {"This link is not valid"}, explore_titles
    assert disconnected >= 1, "the killed replica served none of the participants: the test proved nothing"
    rows = check_database(engine, people)
    assert [r["slot"] for r in rows] == [1, 2, 3, 4]  # nobody registered twice across replicas
    assert sorted(r["list_index"] for r in rows) == [0, 1, 2, 3]  # Latin square: each list exactly once
