"""AppTest checks of every dashboard page: renders without exception, and the main controls change the output."""
import io
from pathlib import Path

import pytest
import streamlit as st
from page_helpers import page, pending, settle
from PIL import Image
from streamlit.testing.v1 import AppTest

from gradviz.attacks.registry import REGISTRY
from gradviz.evaluation.runs.matrix import EvalConfig, evaluate, write_results
from gradviz.paths import user_results_dir
from gradviz.training.config import TrainConfig
from gradviz.training.loop import train_model

pytestmark = [pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def user_zoo(saved_pair):
    """Two small user models, so the pages have something of the user's to show."""
    return saved_pair("mine", steps=10)




def test_models_page_lists_the_zoo_and_user_models(user_zoo):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert not at.exception
    names = {n for df in at.dataframe for n in df.value["model"]}
    assert set(user_zoo) <= names
    assert {"mnist-normal", "mnist-gradreg", "fashion-mnist-normal"} <= names
    assert any("trained by you" in c.value for c in at.caption)
    for frame in at.dataframe:  # readable headers, blanks rather than "None", the provenance columns on demand
        assert list(frame.value.columns)[:4] == ["model", "origin", "defense", "λ"] and "lam" not in frame.value
        assert not frame.value.isna().any().any() and "None" not in frame.value.astype(str).values
    at.toggle(key="model_details").set_value(True).run()
    assert "data" in at.dataframe[0].value.columns and not at.exception


def test_saliency_page_controls_change_the_maps(user_zoo):
    at = page("saliency")
    assert not at.exception, at.exception
    assert 2 <= len(at.multiselect(key="models_mnist").value) <= 4
    before = at.session_state["shared"]
    at.toggle(key="shared").set_value(False).run()
    assert not at.exception and at.session_state["shared"] != before
    assert any("each map scaled by its own maximum" in c.value for c in at.caption)
    at.selectbox(key="method").set_value("integrated-gradients").run()
    assert not at.exception
    at.slider(key="index_mnist_any").set_value(7).run()
    assert not at.exception and any("#7" in c.value for c in at.caption)


def test_saliency_page_with_an_upload_and_a_bad_upload(user_zoo):
    at = page("saliency")
    at.radio(key="image_source").set_value("Upload").run()
    assert any("Upload an image" in i.value for i in at.info)
    image = Image.new("L", (90, 120), 255)
    image.paste(0, (40, 10, 52, 110))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    at.file_uploader(key="upload").upload("one.png", buffer.getvalue(), "image/png").run()
    assert not at.exception and not at.error
    assert any("Made into a digit as MNIST's are: grey → inverted → 28×28" in c.value for c in at.caption)
    assert any("Choose the image's true class" in i.value for i in at.info)  # never assumed to be 0
    assert not at.get("plotly_chart")
    at.selectbox(key="label_Upload").set_value(1).run()
    assert not at.exception and not at.error
    assert any("upload (labelled 1)" in c.value for c in at.caption)
    at.file_uploader(key="upload").upload("bad.png", b"definitely not an image", "image/png").run()
    assert not at.exception
    assert any("not an image" in e.value for e in at.error)


def test_attack_lab_changes_with_eps_and_attack(user_zoo):
    at = page("attack_lab")
    assert not at.exception, at.exception
    fooled_at = lambda: list(at.dataframe[0].value["adversarial prediction"])  # noqa: E731
    at.slider(key="lab_eps").set_value(0.0).run()
    clean = fooled_at()
    assert clean == list(at.dataframe[0].value["clean prediction"])
    at.slider(key="lab_eps").set_value(0.7).run()
    assert not at.exception and fooled_at() != clean
    at.radio(key="attack").set_value("itgsm").run()
    assert not at.exception
    assert any("generated on" in c.value for c in at.caption)
    assert len(at.get("download_button")) == 2
    assert any(h.value == "The iteration path" for h in at.subheader)
    at.radio(key="attack").set_value("pgd").run()
    assert not at.exception and fooled_at() != clean
    at.radio(key="attack").set_value("jsma").run()
    assert not at.exception, at.exception
    assert any("pixels changed" in c.value for c in at.caption) and at.slider(key="lab_jsma_gamma").value == 0.25


@pytest.mark.parametrize("attack", list(REGISTRY))
def test_attack_lab_runs_every_registered_attack_with_its_own_controls(attack, user_zoo):
    at = page("attack_lab")
    at.radio(key="attack").set_value(attack).run()
    assert not at.exception, at.exception
    entry = REGISTRY[attack]
    assert any("generated on" in c.value for c in at.caption) and any(entry.reference in c.value for c in at.caption)
    keys = {w.key for kind in ("slider", "select_slider", "toggle") for w in at.get(kind)}
    assert {f"lab_{attack}_{p.name}" for p in entry.params} <= keys
    assert ("lab_eps" in keys) == entry.eps_bounded
    assert len(at.get("download_button")) == 2


def test_live_progress_shows_done_total_and_time_left():
    def script():
        from app_pages.common import LiveProgress

        bar = LiveProgress("JSMA", upper_bound=True)
        bar(10, 40, "mnist-normal")

    at = AppTest.from_function(script).run()
    assert not at.exception, at.exception
    assert at.progress[0].value == 25
    text = at.progress[0].proto.text
    assert "JSMA · mnist-normal: 10/40" in text and "at most ~" in text and "s left" in text


def test_robustness_page_shows_a_result_folder(user_zoo):
    config = EvalConfig(dataset="mnist", models=user_zoo, attacks=["fgsm", "tgsm"], eps=[0.0, 0.2, 0.4], n=30,
                        device="cpu")
    write_results(evaluate(config, progress=False), user_results_dir() / "mnist-test")
    at = page("robustness")
    assert not at.exception, at.exception
    options = at.selectbox(key="results_mnist").options
    assert "mnist-test (yours)" in options
    at.selectbox(key="results_mnist").set_value("mnist-test (yours)").run()
    assert not at.exception
    answer = next(m.value for m in at.markdown if m.value.startswith("**Which of the paper's claims held here.**"))
    assert "Claim 1 (transfer robustness), gradreg vs normal: **" in answer
    at.radio(key="rob_attack").set_value("tgsm").run()
    assert not at.exception and len(at.dataframe) >= 1
    masking = at.table[0].value  # a table, so the whole reason is shown
    assert list(masking.index) == user_zoo and "reason" in masking.columns


def test_train_page_trains_in_the_background_and_saves(user_models):
    from app_pages.common import job_runner

    at = page("train")
    assert not at.exception
    assert at.number_input(key="t_lam").value == 10.0  # gradreg, the default, shows λ and its warm-up
    at.selectbox(key="t_defense").set_value("normal").run()
    assert not [n for n in at.number_input if n.key in ("t_lam", "t_eps", "t_temperature", "t_lam_warmup")]
    at.selectbox(key="t_defense").set_value("advtrain").run()
    assert at.number_input(key="t_eps").value == 0.3
    at.selectbox(key="t_defense").set_value("rrr-g").run()  # an explanation penalty's λ is its own, not Grad Reg's
    assert at.number_input(key="t_lam_rrr-g").value == 100.0
    at.selectbox(key="t_defense").set_value("rrr").run()
    assert at.number_input(key="t_lam_rrr").value == 0.0154
    at.selectbox(key="t_defense").set_value("normal").run()
    at.radio(key="t_unit").set_value("steps").run()
    assert at.number_input(key="t_length_steps").label == "Number of steps"
    at.number_input(key="t_length_steps").set_value(40)
    at.number_input(key="t_width").set_value(8)
    at.button(key="t_start").click().run()
    assert not at.exception, at.exception
    job = job_runner().jobs[at.session_state["train_job"]]
    job_runner().wait(job, timeout=300)
    at.run()
    assert job.state == "done", job.error
    assert any("Saved" in s.value for s in at.success)
    assert (user_models / f"{job.result['name']}.json").is_file()
    assert job.result["steps"] == 40 and job.result["lr_schedule"] == "cosine"


def test_train_page_lists_an_interrupted_run_and_resumes_it(user_models):
    from app_pages.common import job_runner
    from gradviz.nets.checkpoints import checkpoint_path
    from gradviz.paths import checkpoint_dir
    from gradviz.training.loop import TrainingCancelled

    path = checkpoint_path(checkpoint_dir(), "cut-short")
    config = TrainConfig(defense="gradreg", lam=1.0, steps=6, batch_size=32, width=8, device="cpu", name="cut-short")
    with pytest.raises(TrainingCancelled):
        train_model(config, progress=False, checkpoint=path, should_stop=iter([False] * 4 + [True]).__next__)
    at = page("train")
    assert not at.exception
    assert any("cut-short" in m.value and "step 4 of 6" in m.value for m in at.markdown)
    at.button(key="resume-cut-short").click().run()
    assert not at.exception, at.exception
    job = job_runner().jobs[at.session_state["train_job"]]
    job_runner().wait(job, timeout=300)
    assert job.state == "done", job.error
    assert job.result["resumed_at_step"] == 4 and (user_models / "cut-short.json").is_file()
    assert not path.exists()
    at.run()
    assert not any("cut-short" in m.value for m in at.markdown)


def test_target_grids_scrub_without_recomputing_and_export(user_zoo, monkeypatch):
    import gradviz.attacks.grids
    from app_pages.background import page_runner

    st.cache_resource.clear()  # grids kept by another test would hide the first computation
    views_made = []
    real = gradviz.attacks.grids.cross_predictions
    monkeypatch.setattr(gradviz.attacks.grids, "cross_predictions",
                        lambda grid, models, it: views_made.append(it) or real(grid, models, it))
    at = page("grids")
    assert not at.exception, at.exception
    assert at.slider(key="grid_iteration").value == 10  # the paper's iteration by default
    computed = next(c.value for c in at.caption if "computed once" in c.value)
    figure = lambda: at.get("plotly_chart")[0].proto.spec  # noqa: E731
    at10 = figure()
    at.slider(key="grid_iteration").set_value(3).run()
    assert not at.exception and figure() != at10
    assert next(c.value for c in at.caption if "computed once" in c.value) == computed  # cached, not recomputed
    at.button(key="grid_paper").click().run()
    assert at.slider(key="grid_iteration").value == 10 and figure() == at10
    assert views_made == [10, 3]  # back at iteration 10 the cross-model predictions were kept, not recomputed
    assert len(at.dataframe) == 1 and "Share of off-diagonal cells" in at.markdown[-1].value
    at.toggle(key="grid_all").set_value(False).run()
    assert not at.exception and len(at.dataframe) == 0
    assert len(at.get("download_button")) == 2

    at.multiselect(key="grid_models_mnist").set_value(["mnist-gradreg"]).run()
    at.radio(key="grid_rows").set_value("Chosen images").run()
    at.multiselect(key="grid_images_mnist").set_value([0, 1]).run()
    at.radio(key="grid_attack").set_value("jsma").run()  # minutes on a CPU: in the background, the page not blocked
    assert not at.exception, at.exception
    assert pending(at) and any("takes minutes" in i.value for i in at.info) and not at.get("plotly_chart")
    going = [j for j in page_runner().jobs.values() if j.finished is None and not j.cancelled]
    assert len(going) == 1  # the itgsm grids asked for on the way here were cancelled: nobody waits for them
    at.run()  # a rerun while it runs (Enter, a click, another session) does not start it twice
    assert [j for j in page_runner().jobs.values() if j.finished is None and not j.cancelled] == going
    settle(at)
    assert not at.exception, at.exception
    assert any("JSMA grids show each cell's final image" in c.value and "no iterations to scrub" in c.value
               for c in at.caption)
    assert len(at.get("plotly_chart")) == 1 and not any("iteration slider" in c.value for c in at.caption)
    at.radio(key="grid_attack").set_value("itgsm").run()
    assert at.slider(key="grid_itgsm_eps").value == 1.0  # the paper's unprojected grid
    settle(at.slider(key="grid_itgsm_eps").set_value(0.3).run())
    assert not at.exception and at.slider(key="grid_itgsm_steps").value == 25


def test_the_first_page_starts_one_warm_up_that_reads_the_default_dataset(monkeypatch):
    import sys

    import app_pages.warm_up
    from gradviz.data import datasets

    monkeypatch.setattr(app_pages.warm_up, "DELAY_S", 0.0)
    st.cache_resource.clear()
    datasets.load_arrays.cache_clear()
    at = page("models")
    at.run()
    assert not at.exception, at.exception
    thread = app_pages.warm_up.warm_up()  # every run asked for it: still the one thread of the process
    assert thread.name == "gradviz-warm-up"
    thread.join(timeout=300)
    assert not thread.is_alive() and all(name in sys.modules for name in app_pages.warm_up.HEAVY)
    try:
        datasets.load_arrays("mnist", verify=True)
    except datasets.DatasetNotFound:
        pytest.skip("no full MNIST here: the warm-up had nothing to read")
    assert datasets._builtin.cache_info().hits >= 1  # the call above found what the warm-up had read
