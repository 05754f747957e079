"""Recipes: the committed zoo is what its recipe says, bad recipes are refused before anything trains."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from gradviz.cli.main import main
from gradviz.cli.zoo import README_MARKERS
from gradviz.experiments.plan import build_trials, card_mismatches, sweep_trials, zoo_table
from gradviz.experiments.recipe import RecipeError, load_recipe, parse_recipe
from gradviz.experiments.sweep import choose, to_markdown

ROOT = Path(__file__).resolve().parents[2]
GOOD = """
dataset = "mnist"
[defaults]
epochs = 1
[models.a]
defense = "normal"
[models.b]
defense = "gradreg"
lam = 1
init_from = "a"
"""


@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist", "decoy-mnist", "decoy-fashion-mnist", "block-mnist"])
def test_every_committed_card_records_the_training_config_of_its_recipe_entry(dataset):
    recipe = load_recipe(dataset)
    assert card_mismatches(recipe) == {}
    zoo = {p.stem for p in (ROOT / "models").glob(f"{dataset}-*.json")}
    assert zoo == {name for name, entry in recipe.models.items() if entry.in_zoo}


def test_the_readme_zoo_table_is_generated_from_recipes_and_cards():
    start, end = README_MARKERS
    readme = (ROOT / "README.md").read_text()
    assert readme.split(start, 1)[1].split(end, 1)[0].strip() == zoo_table(
        [load_recipe(d) for d in ("mnist", "fashion-mnist", "decoy-mnist", "decoy-fashion-mnist", "block-mnist")])


@pytest.mark.parametrize("change, message", [
    ('[models.c]\ndefense = "gradreg-y"\nlam = 1\n', "[models.c]: unknown defense 'gradreg-y'"),
    ('[models.c]\ndefense = "normal"\ninit_from = "nowhere"\n', "[models.c]: init_from 'nowhere' is not a [models] entry"),
    ('[models.c]\ndefense = "gradreg"\nlam = -1\n', "[models.c]: λ must be ≥ 0, got -1"),
    ('[sweeps.s]\ndefense = "gradreg"\nlams = [1, -3]\n', "[sweeps.s]: every λ in `lams` must be > 0"),
    ('[models.c]\ndefense = "normal"\nepochz = 3\n', "[models.c]: unknown key epochz"),
    ('[models.c]\ndefense = "normal"\nstored_dtype = "int8"\n', "[models.c]: stored_dtype must be float32 or float16"),
    ('[models.c]\ndefense = "rrr"\nlam = 1\n', "[models.c]: defense 'rrr' needs annotations"),
])
def test_a_bad_recipe_is_refused_with_one_line_naming_the_entry(tmp_path, capsys, change, message):
    path = tmp_path / "bad.toml"
    path.write_text(GOOD + change)
    assert main(["zoo", "build", str(path), "--dry-run", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and str(path) in err


def test_an_init_from_cycle_is_refused(tmp_path):
    text = GOOD.replace('[models.a]\ndefense = "normal"', '[models.a]\ndefense = "normal"\ninit_from = "b"')
    with pytest.raises(RecipeError, match=r"\[models.a\]: init_from cycle a → b → a"):
        parse_recipe(__import__("tomllib").loads(text), tmp_path / "cycle.toml")


def test_build_plans_only_missing_models_and_orders_parents_first(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text(GOOD)
    recipe = load_recipe(path)
    trials = build_trials(recipe, tmp_path / "out", tmp_path / "results")
    assert [t.name for t in trials] == ["a", "b"] and trials[1].depends_on == ("a",)
    assert trials[1].settings["init_from"] == str(tmp_path / "out" / "a.json")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.json").write_text("{}")
    assert [t.name for t in build_trials(recipe, tmp_path / "out", tmp_path / "results")] == ["b"]
    with pytest.raises(RecipeError, match="starts from a, which is not built yet"):
        (tmp_path / "out" / "a.json").unlink()
        build_trials(recipe, tmp_path / "out", tmp_path / "results", only=["b"])


def test_sweeps_of_the_same_length_share_one_reference_model(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text(GOOD + '[sweeps.s]\ndefense = "gradreg"\nlams = [1, 3]\nseeds = [0, 1]\n'
                    '[sweeps.t]\ndefense = "gradreg-uniform"\nlams = [1]\n')
    trials = sweep_trials(load_recipe(path), None, tmp_path / "results")
    references = [t for t in trials if not t.depends_on]
    assert len(references) == 1 and len(trials) == 1 + 4 + 1
    assert all(t.settings["holdout"] == 5000 and t.eval_split == "holdout" for t in trials)


def test_the_choice_rule_uses_the_seed_mean_and_shows_the_spread():
    rows = [{"defense": "normal", "lam": 0.0, "seed": 0, "clean": 0.99, **{f"transfer@{e}": math.nan for e in
                                                                          (0.1, 0.2, 0.3, 0.4, 0.5)}}]
    for lam, seed, clean, robust in [(1, 0, 0.99, 0.2), (1, 1, 0.99, 0.2), (3, 0, 0.99, 0.9), (3, 1, 0.97, 0.1)]:
        rows.append({"defense": "gradreg", "lam": lam, "seed": seed, "clean": clean,
                     **{f"transfer@{e}": robust for e in (0.1, 0.2, 0.3, 0.4, 0.5)}})
    # λ = 3's best seed is the most robust run of all, but its mean clean accuracy (0.98) is a point below.
    assert choose(rows, "gradreg")["lam"] == 1
    table = to_markdown(rows)
    assert "| 3 | 2 | 0.980 ± 0.014 |" in table and "Chosen λ (gradreg): 1" in table


def test_zoo_status_lists_built_and_pending_entries(tmp_path, capsys):
    path = tmp_path / "r.toml"
    path.write_text(GOOD)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.json").write_text(json.dumps({}))
    assert main(["zoo", "status", str(path), "--out", str(tmp_path / "out"), "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "a " in out and "built" in out and "b " in out and "pending" in out
