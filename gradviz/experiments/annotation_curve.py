"""How many annotations does it take? A recipe's [annotation_curve] as trials, and its finished trials as a table.

Every run fine-tunes the recipe's shortcut-trained model for the same number of steps: a penalty (RRR, RRR-G,
counterexamples) on N annotated training images and plain cross-entropy on the rest, or a baseline (plain
cross-entropy, Grad Reg) with no annotations. The N images of a seed are the first N of that seed's permutation of
the training set, so a seed's sets are nested; their annotations come from the dataset's own masks through
`from_generated_masks` and the same `.npz` files a person's strokes become. Each run is then scored on the whole
test set: accuracy with and without the shortcut, the share of |∇ log p| on the marked region, and how often the
prediction follows the swatch (Friedrich et al. 2023 call these runs "interaction efficiency").
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
from scipy import stats

from gradviz.data.annotations import from_generated_masks, save_annotations
from gradviz.data.datasets import load_masks
from gradviz.evaluation.figures.annotation_curve import write_curve_svg
from gradviz.evaluation.report.annotation_curve import CURVE_FILE, FIGURE_FILE
from gradviz.evaluation.runs.shortcut_check import ShortcutData
from gradviz.experiments.plan import Layout, layout
from gradviz.experiments.recipe import ALL_IMAGES, CurveEntry, Recipe, RecipeError
from gradviz.experiments.trials import Trial, finished_result, shortcut_metrics
from gradviz.files import atomic_write
from gradviz.nets.store import load_model
from gradviz.paths import ZOO_DIR

METRICS = ("shortcut_free_accuracy", "wrong_region_share", "follows_shortcut", "accuracy")
CONFIDENCE = 0.95


def the_curve(recipe: Recipe) -> CurveEntry:
    if recipe.curve is None:
        raise RecipeError(f"{recipe.path}: has no [annotation_curve] section")
    return recipe.curve


def curve_folder(recipe: Recipe, results: str | Path | None = None) -> Path:
    return layout(recipe, results).root / "annotation-curve"


def count_label(count: int | None) -> str:
    return ALL_IMAGES if count is None else str(count)


def annotation_file(recipe: Recipe, count: int | None, seed: int, results: str | Path | None = None,
                    write: bool = True) -> Path:
    """The annotation set of `count` images (None: all) for `seed`, written from the masks the first time."""
    path = curve_folder(recipe, results) / "annotations" / f"n{count_label(count)}-seed{seed}.npz"
    if write and not path.is_file():
        masks = load_masks(recipe.dataset, "train")
        if masks is None:
            raise RecipeError(f"{recipe.path}: {recipe.dataset} has no masks to make annotations from")
        order = np.random.default_rng(seed).permutation(len(masks))
        ids = order if count is None else order[:count]
        path.parent.mkdir(parents=True, exist_ok=True)
        save_annotations(from_generated_masks(recipe.dataset, masks.numpy(), ids), path)
    return path


def curve_trials(recipe: Recipe, results: str | Path | None = None, out_dir: str | Path = ZOO_DIR,
                 write_annotations: bool = True) -> list[Trial]:
    """Every run of the curve: baselines first, then penalty × count × seed."""
    curve, where = the_curve(recipe), layout(recipe, results)
    start_card = _start_card(recipe, curve, Path(out_dir), where)
    every = len(load_masks(recipe.dataset, "train")) if None in curve.counts else 0
    runs = [(defense, lam, "0", 0, seed, None) for defense, lam in curve.baselines.items() for seed in curve.seeds]
    runs += [(defense, lam, count_label(count), every if count is None else count, seed,
              annotation_file(recipe, count, seed, results, write_annotations))
             for defense, lam in curve.penalties.items() for count in curve.counts for seed in curve.seeds]
    models = curve_folder(recipe, results) / "models"
    return [_trial(recipe, curve, where, start_card, models, *run) for run in runs]


def _start_card(recipe: Recipe, curve: CurveEntry, out_dir: Path, where: Layout) -> Path:
    entry = recipe.models[curve.start]
    card = (out_dir if entry.in_zoo else where.models) / f"{curve.start}.json"
    if not card.is_file():
        raise RecipeError(f"{recipe.path}: [annotation_curve] starts from {curve.start}, which is not built yet: "
                          f"python -m gradviz zoo build {recipe.dataset} --only {curve.start}")
    return card


def _trial(recipe: Recipe, curve: CurveEntry, where: Layout, start_card: Path, models: Path, defense: str,
           lam: float, label: str, images: int, seed: int, annotations: Path | None) -> Trial:
    config = replace(recipe.models[curve.start].config, defense=defense, lam=lam, seed=seed, init_from=str(start_card),
                     annotations=None if annotations is None else str(annotations), name=None, **curve.settings)
    name = f"{recipe.dataset}-curve-{defense}{'' if annotations is None else f'-n{label}'}-seed{seed}"
    group = {"curve": defense, "lam": lam, "annotated": label, "images": images, "seed": seed,
             "baseline": annotations is None}
    return Trial(name=name, settings=config.settings(), folder=str(where.trial(name)),
                 checkpoint=str(where.checkpoint(name)), out_dir=str(models),
                 eval_split="test", eval_n=curve.test_images or 0, checkpoint_every=max(1, (config.steps or 500) // 2),
                 group=group, evaluation="shortcut")


def curve_rows(trials: list[Trial]) -> list[dict]:
    """One row per finished run: its group and its shortcut numbers."""
    rows = []
    for trial in trials:
        final = finished_result(Path(trial.folder), trial.settings)
        if final is not None:
            card = json.loads(Path(final["card"]).read_text())
            rows.append({**trial.group, **{m: final["metrics"][m] for m in METRICS},
                         "seconds": card["train_seconds"], "device": card.get("device", "")})
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    """Mean and 95% t-interval over seeds per (penalty, count), in the order the rows came."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["curve"], row["annotated"]), []).append(row)
    out = []
    for (curve, annotated), members in groups.items():
        entry = {"curve": curve, "annotated": annotated, "images": members[0]["images"],
                 "baseline": members[0]["baseline"], "seeds": len(members)}
        for metric in METRICS:
            entry[metric], entry[f"{metric}_interval"] = mean_interval([m[metric] for m in members])
        out.append(entry)
    return out


def mean_interval(values: list[float]) -> tuple[float, tuple[float, float]]:
    """The mean and its 95% Student-t interval over seeds, clipped to [0, 1] ((nan, nan) from one seed: no spread
    to go by)."""
    data = np.asarray(values, dtype=float)
    mean = float(data.mean())
    if len(data) < 2:
        return mean, (float("nan"), float("nan"))
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, len(data) - 1) * data.std(ddof=1) / np.sqrt(len(data)))
    return mean, (max(mean - half, 0.0), min(mean + half, 1.0))  # every curve metric is a share in [0, 1]


def curve_record(recipe: Recipe, trials: list[Trial]) -> dict:
    """What curve.json holds: rows, summary and provenance, with the start model measured once."""
    curve = the_curve(recipe)
    rows = curve_rows(trials)
    start, _ = load_model(trials[0].settings["init_from"])
    return {"dataset": recipe.dataset, "start": curve.start, "settings": curve.settings,
            "penalties": curve.penalties, "baselines": curve.baselines, "seeds": list(curve.seeds),
            "counts": [count_label(c) for c in curve.counts], "test_images": curve.test_images,
            "runs": len(trials), "finished": len(rows),
            "seconds": sum(r["seconds"] for r in rows), "devices": sorted({r["device"] for r in rows}),
            "start_metrics": shortcut_metrics(ShortcutData.load(recipe.dataset, curve.test_images), start),
            "rows": rows, "summary": summarise(rows)}


def write_curve(record: dict, folder: str | Path) -> Path:
    """curve.json (and its figure, once a run finished) in `folder`: what the report, the page and the SVG read."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / CURVE_FILE
    atomic_write(path, lambda p: p.write_text(json.dumps(record, indent=1)))
    if record["rows"]:
        write_curve_svg(record, folder / FIGURE_FILE)
    return path
