"""The Experiments page and the library under it, on real (tiny) trials in a private results folder."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from experiment_helpers import populate_results
from streamlit.testing.v1 import AppTest

from gradviz.experiments.runs import curve_figure, curves, list_runs
from gradviz.nets.cards import list_models

pytestmark = [pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
@pytest.fixture
def results(tmp_path, monkeypatch) -> Path:
    """A results folder with a finished sweep (reference + λ = 1 × two seeds) and one interrupted run."""
    folder = tmp_path / "results"
    monkeypatch.setenv("GRADVIZ_RESULTS", str(folder))
    populate_results(folder)
    cut = folder / "mnist" / "trials" / "mnist-cut-off"
    cut.mkdir(parents=True)
    status = {"state": "running", "pid": 2**22 + 7, "host": os.uname().nodename, "updated": 1.0e9, "step": 40}
    (cut / "status.json").write_text(json.dumps(status))  # its process is gone
    return folder


def test_runs_are_listed_with_their_state_and_curves_band_the_seeds(results):
    runs = list_runs()
    states = dict(zip(runs.name, runs.state))
    assert states.pop("mnist-cut-off") == "interrupted"
    assert set(states.values()) == {"finished"} and len(states) == 3
    long = curves(runs)
    assert {"train_loss", "accuracy", "transfer@0.3"} <= set(long.metric)
    figure = curve_figure(long, "transfer@0.3")
    names = [t.name for t in figure.data if t.name]
    assert names == ["tiny λ=1 (mean of 2 seeds)"]  # the reference has no transfer metric; two seeds, one band
    assert any(t.fill == "toself" for t in figure.data)


def test_experiments_page_lists_plots_and_adopts_a_finished_model(results, user_models):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    at.switch_page("app_pages/experiments.py")
    at.run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert len(table) == 4 and "interrupted" in set(table.state)
    assert any("3** finished" in m.value for m in at.markdown)
    at.selectbox[0].set_value("sweep tiny").run()
    at.selectbox[1].set_value("transfer@0.3").run()
    assert not at.exception and len(at.get("plotly_chart")) == 1
    pick = at.selectbox[2].options[0]
    at.button[1].click().run()
    assert not at.exception and at.success
    assert pick in {c["name"] for c in list_models([user_models])}


def test_experiments_page_without_runs_says_how_to_start_one(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADVIZ_RESULTS", str(tmp_path / "nothing"))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    at.switch_page("app_pages/experiments.py")
    at.run()
    assert not at.exception and "gradviz zoo sweep" in at.info[0].value
