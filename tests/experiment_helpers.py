"""Real, tiny experiment results for the Experiments page's tests: a sweep (reference + λ = 1 × two seeds)."""
from __future__ import annotations

from pathlib import Path

from gradviz.experiments.plan import sweep_trials
from gradviz.experiments.recipe import load_recipe
from gradviz.experiments.trials import LocalReporter, execute_trial

TINY = """
dataset = "mnist"
[defaults]
train_subset = 260
holdout = 60
batch_size = 25
epochs = 2
width = 8
[sweeps.tiny]
defense = "gradreg"
lams = [1]
seeds = [0, 1]
"""


def populate_results(folder: Path) -> None:
    """Train the tiny sweep into `folder` (a results root) with gradviz's own trial code, in about ten seconds."""
    recipe = folder / "tiny.toml"
    folder.mkdir(parents=True, exist_ok=True)
    recipe.write_text(TINY)
    for trial in sweep_trials(load_recipe(recipe), None, folder):
        execute_trial(trial, LocalReporter())
