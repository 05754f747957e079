"""A recipe turned into trials, and trials back into results: what `gradviz zoo build | sweep | status` run.

Everything a recipe's runs leave lives under one results folder per dataset (default ~/.cache/gradviz/experiments/):
trials/NAME/ (status, metrics, final result), checkpoints/ (unfinished runs, kept across sessions),
models/ (finished models that are not zoo models: experiments and sweep candidates), sweeps/ (tables) and
ray/ (Ray Tune's own records). Zoo models go to models/ in the repository.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from gradviz.evaluation.report.tables import markdown_table
from gradviz.experiments.recipe import ModelEntry, Recipe, RecipeError, SweepEntry, entry_settings
from gradviz.experiments.sweep import COLUMNS, to_markdown
from gradviz.experiments.trials import Trial, finished_result, run_state
from gradviz.nets.checkpoints import checkpoint_path
from gradviz.paths import ZOO_DIR, carry_dir, experiments_dir, path_inside
from gradviz.training.config import comparable_settings
from gradviz.training.defenses import defense_spec


def default_results() -> Path:
    """The results folder: GRADVIZ_RESULTS, else experiments/ in GRADVIZ_CACHE (~/.cache/gradviz).

    Outside the repository on purpose: a fresh checkout of the work tree must not lose a long run's checkpoints.
    """
    return experiments_dir()


@dataclass(frozen=True)
class Layout:
    """Where one dataset's experiment results live."""

    root: Path

    def trial(self, name: str) -> Path:
        return path_inside(self.root / "trials", name, what="trial name")

    def checkpoint(self, name: str) -> Path:
        return checkpoint_path(self.root / "checkpoints", name)

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def sweeps(self) -> Path:
        return self.root / "sweeps"

    @property
    def ray(self) -> Path:
        return self.root / "ray"


def layout(recipe: Recipe, results: str | Path | None = None) -> Layout:
    return Layout(Path(results or default_results()) / recipe.dataset)


def _destination(entry: ModelEntry, out_dir: Path, where: Layout) -> Path:
    return out_dir if entry.in_zoo else where.models


def build_trials(recipe: Recipe, out_dir: str | Path = ZOO_DIR, results: str | Path | None = None,
                 only: list[str] | None = None, rebuild: list[str] | None = None) -> list[Trial]:
    """Trials for the recipe's models that are not on disk yet (or named in `rebuild`), parents first."""
    out_dir, where, rebuild = Path(out_dir), layout(recipe, results), list(rebuild or [])
    unknown = sorted((set(only or []) | set(rebuild)) - set(recipe.models))
    if unknown:
        raise RecipeError(f"{recipe.path}: no [models] entry {', '.join(unknown)} (entries: {', '.join(recipe.models)})")
    wanted = set(only or recipe.models) | set(rebuild)
    todo = {name for name in wanted
            if name in rebuild or not (_destination(recipe.models[name], out_dir, where) / f"{name}.json").is_file()}
    return [_model_trial(recipe, recipe.models[name], out_dir, where, todo) for name in recipe.models if name in todo]


def _card_path(recipe: Recipe, name: str, out_dir: Path, where: Layout) -> Path:
    return _destination(recipe.models[name], out_dir, where) / f"{name}.json"


def _model_trial(recipe: Recipe, entry: ModelEntry, out_dir: Path, where: Layout, todo: set[str]) -> Trial:
    settings = entry.config.settings()
    depends: tuple[str, ...] = ()
    if entry.init_from is not None:
        parent = _card_path(recipe, entry.init_from, out_dir, where)
        if entry.init_from not in todo and not parent.is_file():
            raise RecipeError(f"{recipe.path}: [models.{entry.name}]: starts from {entry.init_from}, which is not "
                              f"built yet: build it too (--only {entry.init_from} {entry.name})")
        settings["init_from"] = str(parent)
        depends = (entry.init_from,) if entry.init_from in todo else ()
    source = entry.transfer_source or recipe.transfer_source
    monitored = bool(source) and source != entry.name
    return Trial(name=entry.name, settings=settings, folder=str(where.trial(entry.name)),
                 checkpoint=str(where.checkpoint(entry.name)), out_dir=str(_destination(entry, out_dir, where)),
                 eval_split="test", eval_n=recipe.eval_n,
                 transfer_source=str(_card_path(recipe, source, out_dir, where)) if monitored else None,
                 transfer_checkpoint=str(where.checkpoint(source)) if monitored else None,
                 depends_on=depends, checkpoints_per_epoch=recipe.checkpoints_per_epoch,
                 stored_dtype=entry.stored_dtype)


def sweep_trials(recipe: Recipe, names: list[str] | None = None, results: str | Path | None = None) -> list[Trial]:
    """The reference normal model and every λ × seed candidate of the named sweeps (all sweeps by default)."""
    unknown = sorted(set(names or []) - set(recipe.sweeps))
    if unknown:
        raise RecipeError(f"{recipe.path}: no [sweeps] entry {', '.join(unknown)} (entries: {', '.join(recipe.sweeps)})")
    where = layout(recipe, results)
    trials = [t for name in names or recipe.sweeps for t in _sweep_trials(recipe, recipe.sweeps[name], where)]
    return list({t.name: t for t in trials}.values())  # sweeps of the same length share their reference


def _sweep_trials(recipe: Recipe, sweep: SweepEntry, where: Layout) -> list[Trial]:
    reference, references = sweep.reference(), where.sweeps / "references" / "models"

    def trial(config, group: dict, out: Path, source: str | None, depends: tuple[str, ...]) -> Trial:
        return Trial(name=config.name, settings=config.settings(), folder=str(where.trial(config.name)),
                     checkpoint=str(where.checkpoint(config.name)), out_dir=str(out), eval_split="holdout",
                     eval_n=config.holdout, transfer_source=source, depends_on=depends,
                     checkpoints_per_epoch=recipe.checkpoints_per_epoch, group={"sweep": sweep.name, **group})

    source = str(references / f"{reference.name}.json")
    return [trial(reference, {"defense": "normal", "lam": 0.0, "seed": reference.seed}, references, None, ()),
            *[trial(c, {"defense": c.defense, "lam": c.lam, "seed": c.seed}, where.sweeps / sweep.name / "models",
                    source, (reference.name,)) for c in sweep.candidates()]]


def carry_root(recipe: Recipe) -> Path:
    """Where the recipe's long runs are carried in the checkout (carried/DATASET)."""
    return path_inside(carry_dir(), recipe.dataset, what="dataset")


def entry_trials(recipe: Recipe, out_dir: str | Path = ZOO_DIR, results: str | Path | None = None) -> list[Trial]:
    """One trial per [models] entry, built or not: what status, carry and unpack look at."""
    return build_trials(recipe, out_dir, results, rebuild=list(recipe.models))


def reset(trials: list[Trial]) -> None:
    """Forget earlier results and checkpoints of these trials (for a rebuild from scratch)."""
    for trial in trials:
        shutil.rmtree(trial.folder, ignore_errors=True)
        Path(trial.checkpoint).unlink(missing_ok=True)


def sweep_rows(trials: list[Trial]) -> list[dict]:
    """One row per finished sweep trial: its group (defense, λ, seed) and validation accuracies."""
    rows = []
    for trial in trials:
        final = finished_result(Path(trial.folder), trial.settings)
        if final is None:
            continue
        metrics = final["metrics"]
        if all(c in metrics for c in COLUMNS[1:]) or trial.group["defense"] == "normal":  # scored, or the reference
            rows.append({**trial.group, "clean": metrics["accuracy"],
                         **{c: metrics.get(c, float("nan")) for c in COLUMNS[1:]}})
    return rows


def write_sweep(recipe: Recipe, sweep: str, results: str | Path | None = None) -> tuple[Path, str]:
    """Write sweeps/NAME.json and .md from the finished trials; returns the Markdown path and text."""
    trials = sweep_trials(recipe, [sweep], results)
    rows = sweep_rows(trials)
    folder = layout(recipe, results).sweeps
    folder.mkdir(parents=True, exist_ok=True)
    text = f"# Sweep {recipe.dataset} {sweep}\n\n{to_markdown(rows)}\n"
    (folder / f"{sweep}.json").write_text(json.dumps({"sweep": sweep, "rows": rows}, indent=1))
    (folder / f"{sweep}.md").write_text(text)
    return folder / f"{sweep}.md", text


def trial_state(trial: Trial) -> dict:
    """Where a planned trial stands (see gradviz.experiments.trials.run_state)."""
    return run_state(Path(trial.folder), Path(trial.checkpoint), trial.settings)


def card_mismatches(recipe: Recipe, out_dir: str | Path = ZOO_DIR) -> dict[str, dict]:
    """{model: {setting: (card's, recipe's)}} for zoo models whose card disagrees with their recipe entry."""
    out = {}
    for name, entry in recipe.models.items():
        path = Path(out_dir) / f"{name}.json"
        if entry.in_zoo and path.is_file():
            card, wanted = comparable_settings(json.loads(path.read_text())), entry_settings(entry)
            diff = {k: (card.get(k), wanted.get(k)) for k in sorted(set(card) | set(wanted))
                    if card.get(k) != wanted.get(k)}
            if diff:
                out[name] = diff
    return out


def zoo_table(recipes: list[Recipe], out_dir: str | Path = ZOO_DIR) -> str:
    """The README's zoo table, made from the recipes and the committed cards (never typed by hand)."""
    rows = []
    for recipe in recipes:
        for name, entry in recipe.models.items():
            path = Path(out_dir) / f"{name}.json"
            if not entry.in_zoo or not path.is_file():
                continue
            card, c = json.loads(path.read_text()), entry.config
            start = f" from {entry.init_from}" if entry.init_from else ""
            spec = defense_spec(c.defense)
            lam = f"{c.lam:.4g}" if "lam" in spec.settings else "–"
            eps = f"{c.eps:g}" if "eps" in spec.settings else "–"
            epochs = " + ".join([f"{c.epochs:g}"] * len(spec.phases))  # a distillation's teacher, then its student
            shape = f"{c.layers}, {c.width:,} ({entry.stored_dtype})"
            rows.append([name, f"{c.defense}{start}", shape, lam, eps, epochs, c.batch_size,
                         f"{c.lr:g} ({c.lr_schedule})", "yes" if c.augment else "no", f"{c.lam_warmup:g}",
                         f"{card['clean_test_accuracy']:.2%}", f"{card['train_seconds']:,.0f} s"])
    return "\n".join(markdown_table(["model", "defense", "layers, FC (stored)", "λ", "ε", "epochs", "batch",
                                     "lr (schedule)", "shifts", "λ ramp", "clean test acc.", "train time"], rows))
