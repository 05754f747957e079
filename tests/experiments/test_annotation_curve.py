"""How many annotations does it take? The curve's recipe section, its trials, its annotation sets and its report."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from gradviz.cli.main import main
from gradviz.data.annotations import load_annotations
from gradviz.evaluation.report.annotation_curve import annotation_curve_lines, read_curve
from gradviz.experiments.annotation_curve import curve_record, curve_trials, mean_interval, write_curve
from gradviz.experiments.plan import build_trials
from gradviz.experiments.recipe import RecipeError, load_recipe
from gradviz.experiments.trials import LocalReporter, execute_trial

TINY = """
dataset = "decoy-mnist"
[defaults]
train_subset = 300
batch_size = 25
steps = 12
width = 8
[models.start]
defense = "normal"
[annotation_curve]
start = "start"
counts = [5, 25]
seeds = [0, 1]
steps = 3
batch_size = 20
test_images = 200
penalties = { rrr = 0.0154, counterexamples = 0 }
baselines = { normal = 0 }
"""


def _recipe(folder: Path, text: str = TINY):
    path = folder / "tiny.toml"
    path.write_text(text)
    return load_recipe(path)


@pytest.mark.parametrize("change, message", [
    (('start = "start"', 'start = "nowhere"'), "start 'nowhere' is not a [models] entry"),
    (("counts = [5, 25]", "counts = [0]"), "counts must be a non-empty list"),
    (("counts = [5, 25]", 'counts = ["most"]'), "counts must be a non-empty list"),
    (("baselines = { normal = 0 }", "baselines = { rrr = 1 }"), "'rrr' belongs in penalties"),
    (("penalties = { rrr = 0.0154, counterexamples = 0 }", "penalties = { gradreg = 1 }"),
     "'gradreg' belongs in baselines"),
    (("penalties = { rrr = 0.0154, counterexamples = 0 }", "penalties = { rrr = 0 }"), "rrr: defense 'rrr' needs"),
    (("test_images = 200", "test_images = -3"), "test_images must be a whole number"),
    (("seeds = [0, 1]", "seedz = [0, 1]"), "unknown key seedz"),
])
def test_a_bad_annotation_curve_is_refused_naming_what_is_wrong(tmp_path, change, message):
    with pytest.raises(RecipeError, match=r"\[annotation_curve\]") as refused:
        _recipe(tmp_path, TINY.replace(*change))
    assert message in str(refused.value)


def test_the_committed_decoy_recipes_plan_every_penalty_count_and_seed(tmp_path):
    for dataset in ("decoy-mnist", "decoy-fashion-mnist"):
        recipe = load_recipe(dataset)
        trials = curve_trials(recipe, tmp_path, write_annotations=False)
        curve = recipe.curve
        assert len(trials) == len(curve.seeds) * (len(curve.baselines) + len(curve.penalties) * len(curve.counts))
        assert {t.group["curve"] for t in trials} == {"normal", "gradreg", "rrr", "rrr-g", "counterexamples"}
        assert len({t.name for t in trials}) == len(trials)


def test_a_tiny_curve_runs_resumes_and_reports(tmp_path):
    recipe = _recipe(tmp_path)
    for trial in build_trials(recipe, tmp_path / "zoo", tmp_path):
        execute_trial(trial, LocalReporter())
    trials = curve_trials(recipe, tmp_path, tmp_path / "zoo")
    assert len(trials) == 2 + 2 * 2 * 2
    five, twenty_five = (load_annotations(trials[2 + i].settings["annotations"], "decoy-mnist", (28, 28))
                         for i in (0, 2))  # rrr n5 seed0, rrr n25 seed0
    assert len(five) == 5 and len(twenty_five) == 25
    assert set(five.image_ids) <= set(twenty_five.image_ids)  # a seed's sets are nested
    other_seed = load_annotations(trials[3].settings["annotations"], "decoy-mnist", (28, 28))
    assert set(other_seed.image_ids) != set(five.image_ids)
    for trial in trials:
        execute_trial(trial, LocalReporter())
    before = {t.name: json.loads((Path(t.folder) / "final.json").read_text())["metrics"] for t in trials}
    assert execute_trial(trials[-1], LocalReporter()) == before[trials[-1].name]  # finished: not trained again

    folder = tmp_path / "published"
    record = read_curve(write_curve(curve_record(recipe, trials), folder).parent)
    assert record["finished"] == record["runs"] == 10
    assert (folder / "curve.svg").read_text().lstrip().startswith("<?xml")
    cells = {(e["curve"], e["annotated"]): e for e in record["summary"]}
    assert set(cells) == {("normal", "0"), ("rrr", "5"), ("rrr", "25"), ("counterexamples", "5"),
                          ("counterexamples", "25")}
    for entry in cells.values():
        assert entry["seeds"] == 2 and 0 <= entry["shortcut_free_accuracy"] <= 1
        low, high = entry["shortcut_free_accuracy_interval"]
        assert low <= entry["shortcut_free_accuracy"] <= high
    rows = [r for r in record["rows"] if r["curve"] == "rrr" and r["annotated"] == "25"]
    assert cells[("rrr", "25")]["wrong_region_share"] == pytest.approx(np.mean([r["wrong_region_share"] for r in rows]))
    text = "\n".join(annotation_curve_lines([folder]))
    assert "## How many annotations does it take?" in text and "N = 25" in text and "curve.svg" in text


def test_the_interval_over_seeds_is_student_t():
    mean, (low, high) = mean_interval([0.5, 0.7, 0.6])
    assert mean == pytest.approx(0.6)
    assert high - mean == pytest.approx(4.302653 * 0.1 / math.sqrt(3), rel=1e-5)  # t(0.975, 2) · s / √n
    assert all(math.isnan(v) for v in mean_interval([0.4])[1])
    assert mean_interval([0.99, 1.0, 0.9])[1][1] == 1.0  # a share's interval stops at 1


def test_zoo_curve_dry_run_lists_the_trials_and_trains_nothing(tmp_path, capsys):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    assert main(["zoo", "build", str(path), "--out", str(tmp_path / "zoo"), "--results", str(tmp_path),
                 "--dry-run"]) == 0
    capsys.readouterr()
    assert main(["zoo", "curve", str(path), "--results", str(tmp_path), "--dry-run"]) == 2  # start not built
    assert "not built yet" in capsys.readouterr().err
