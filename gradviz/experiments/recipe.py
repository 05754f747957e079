"""Recipes: a dataset's zoo and its λ × seed sweeps as data, one TOML file, checked before anything trains.

A recipe has `[defaults]` (training settings every entry starts from), `[models.NAME]` (one committed or
experimental model each) and `[sweeps.NAME]` (a defense, a λ grid and seeds, scored on held-out training
digits). Every setting is a `TrainConfig` field; `lam_ref` gives λ in the reference code's units instead.
Anything wrong (an unknown key or defense, a negative λ, an `init_from` that names no entry, a cycle) is
refused with one line naming the entry, so a typo never costs hours of training.
"""
from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from gradviz.nets.store import STORED_DTYPES
from gradviz.paths import RECIPE_DIR, UnsafeNameError, safe_name
from gradviz.training.config import TrainConfig, comparable_settings
from gradviz.training.defenses import defense_spec
from gradviz.training.penalties import from_reference_lambda

SETTING_KEYS = set(TrainConfig().settings()) - {"dataset"}  # the dataset is the file's
MODEL_KEYS = SETTING_KEYS | {"lam_ref", "in_zoo", "transfer_source", "stored_dtype"}
SWEEP_KEYS = (SETTING_KEYS - {"lam", "seed", "init_from"}) | {"lams", "seeds"}
TOP_KEYS = {"dataset", "transfer_source", "eval_n", "checkpoints_per_epoch", "defaults", "models", "sweeps",
            "annotation_curve"}
CURVE_SETTINGS = {"steps", "batch_size", "lr", "lr_schedule"}
CURVE_KEYS = CURVE_SETTINGS | {"start", "counts", "seeds", "penalties", "baselines", "test_images"}
ALL_IMAGES = "all"
DEFAULT_HOLDOUT = 5000


class RecipeError(ValueError):
    """A recipe that cannot run; the message is one line naming the file and the entry."""


@dataclass(frozen=True)
class ModelEntry:
    """One model the recipe builds; `init_from` names another entry whose weights it starts from."""

    name: str
    config: TrainConfig
    init_from: str | None = None
    in_zoo: bool = True
    transfer_source: str | None = None  # the entry whose FGSM examples monitor this one (default: the recipe's)
    stored_dtype: str = "float32"  # "float16" halves the committed file (the model still loads as float32)


@dataclass(frozen=True)
class SweepEntry:
    """Candidates λ × seed of one defense, trained on the fit split and scored against `reference`'s FGSM."""

    name: str
    defense: str
    lams: tuple[float, ...]
    seeds: tuple[int, ...]
    base: TrainConfig

    def reference(self) -> TrainConfig:
        """The normal model whose FGSM examples of the held-out digits score every candidate; named by its
        settings, so sweeps of the same length share one."""
        config = replace(self.base, defense="normal", lam=0.0, lam_warmup=0.0)
        digest = hashlib.sha256(json.dumps(asdict(config), sort_keys=True).encode()).hexdigest()[:8]
        return replace(config, name=f"{self.base.dataset}-sweep-normal-{digest}")

    def candidates(self) -> list[TrainConfig]:
        return [replace(self.base, defense=self.defense, lam=lam, seed=seed,
                        name=f"{self.prefix()}-lam{lam:g}-seed{seed}") for lam in self.lams for seed in self.seeds]

    def prefix(self) -> str:
        return f"{self.base.dataset}-sweep-{self.name}"


@dataclass(frozen=True)
class CurveEntry:
    """How many annotations does it take? Every penalty × annotated-image count × seed fine-tunes `start` (a
    [models] entry that learned the shortcut) with annotations made from the dataset's own masks; the baselines
    (plain cross-entropy, Grad Reg) fine-tune it as long with none."""

    start: str
    counts: tuple[int | None, ...]  # None: every training image
    seeds: tuple[int, ...]
    penalties: dict[str, float]  # a masked defense → its λ (0 for one without)
    baselines: dict[str, float]  # an unmasked defense → its λ
    settings: dict  # steps, batch size, learning rate (and schedule) of every run
    test_images: int | None = None  # score on the first this many test images (None: all)


@dataclass(frozen=True)
class Recipe:
    """A parsed, checked recipe."""

    path: Path
    dataset: str
    transfer_source: str | None
    eval_n: int
    checkpoints_per_epoch: int
    models: dict[str, ModelEntry]
    sweeps: dict[str, SweepEntry]
    curve: CurveEntry | None = None


def recipe_path(name_or_path: str | Path) -> Path:
    """A recipe file from a path, or from a dataset name (`mnist` → recipes/mnist.toml)."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = RECIPE_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        known = ", ".join(p.stem for p in sorted(RECIPE_DIR.glob("*.toml")))
        raise RecipeError(f"no recipe {str(name_or_path)!r} (known: {known})")
    return path


def load_recipe(name_or_path: str | Path) -> Recipe:
    """Read and check a recipe; raises RecipeError naming the first problem."""
    path = recipe_path(name_or_path)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{path}: not valid TOML ({exc})") from exc
    return parse_recipe(data, path)


def parse_recipe(data: dict, path: Path) -> Recipe:
    """Check a recipe's parsed TOML (split out so tests can feed dictionaries)."""
    _unknown(data, TOP_KEYS, f"{path}: top level")
    if "dataset" not in data:
        raise RecipeError(f"{path}: top level: `dataset` is missing")
    defaults = _settings(data.get("defaults", {}), SETTING_KEYS, f"{path}: [defaults]")
    base = TrainConfig(dataset=data["dataset"], **defaults)
    models = {name: _model(name, entry, base, path) for name, entry in data.get("models", {}).items()}
    sweeps = {name: _sweep(name, entry, base, path) for name, entry in data.get("sweeps", {}).items()}
    _check_parents(models, path)
    source = data.get("transfer_source")
    if source is not None and source not in models:
        raise RecipeError(f"{path}: transfer_source {source!r} is not a [models] entry")
    for name, entry in models.items():
        if entry.transfer_source is not None and entry.transfer_source not in models:
            raise RecipeError(f"{path}: [models.{name}]: transfer_source {entry.transfer_source!r} is not a "
                              "[models] entry")
        if entry.transfer_source == name:
            raise RecipeError(f"{path}: [models.{name}]: a model cannot be its own transfer source")
    curve = _curve(data["annotation_curve"], base, models, path) if "annotation_curve" in data else None
    return Recipe(path, data["dataset"], source, int(data.get("eval_n", 1000)),
                  int(data.get("checkpoints_per_epoch", 1)), models, sweeps, curve)


def _unknown(entry: dict, allowed: set[str], where: str) -> None:
    extra = sorted(set(entry) - allowed)
    if extra:
        raise RecipeError(f"{where}: unknown key{'s' if len(extra) > 1 else ''} {', '.join(extra)}")


def _settings(entry: dict, allowed: set[str], where: str) -> dict:
    _unknown(entry, allowed, where)
    return {k: v for k, v in entry.items() if k in SETTING_KEYS}


def _safe(name: str, where: str) -> None:
    """Entry names become folder and file names: refuse any that is not a plain name."""
    try:
        safe_name(name, "entry name")
    except UnsafeNameError as exc:
        raise RecipeError(f"{where}: {exc}") from exc


def _checked(config: TrainConfig, where: str) -> TrainConfig:
    if config.lam < 0:
        raise RecipeError(f"{where}: λ must be ≥ 0, got {config.lam:g}")
    try:
        config.validate()
    except ValueError as exc:
        raise RecipeError(f"{where}: {exc}") from exc
    return config


def _model(name: str, entry: dict, base: TrainConfig, path: Path) -> ModelEntry:
    where = f"{path}: [models.{name}]"
    _safe(name, where)
    settings = _settings(entry, MODEL_KEYS, where)
    if "lam_ref" in entry:
        if "lam" in entry:
            raise RecipeError(f"{where}: give lam or lam_ref, not both")
        settings["lam"] = from_reference_lambda(float(entry["lam_ref"]))
    parent = settings.pop("init_from", None)
    config = _checked(replace(base, **settings, name=name), where)
    stored = entry.get("stored_dtype", "float32")
    if stored not in STORED_DTYPES:
        raise RecipeError(f"{where}: stored_dtype must be {' or '.join(STORED_DTYPES)}, not {stored!r}")
    return ModelEntry(name, config, parent, bool(entry.get("in_zoo", True)), entry.get("transfer_source"), stored)


def _sweep(name: str, entry: dict, base: TrainConfig, path: Path) -> SweepEntry:
    where = f"{path}: [sweeps.{name}]"
    _safe(name, where)
    settings = _settings(entry, SWEEP_KEYS, where)
    lams = tuple(float(v) for v in entry.get("lams", []))
    seeds = tuple(int(v) for v in entry.get("seeds", [base.seed]))
    if not lams or not seeds:
        raise RecipeError(f"{where}: needs a non-empty `lams` list (and `seeds`, if given)")
    if any(lam <= 0 for lam in lams):
        raise RecipeError(f"{where}: every λ in `lams` must be > 0, got {', '.join(f'{v:g}' for v in lams)}")
    if "holdout" not in settings and base.holdout == 0:
        settings["holdout"] = DEFAULT_HOLDOUT
    sweep = SweepEntry(name, settings.get("defense", ""), lams, seeds, replace(base, **settings))
    _checked(replace(sweep.base, defense="normal"), where)
    _checked(sweep.candidates()[0], where)  # the others differ only in λ > 0 and seed
    return sweep


def _curve(entry: dict, base: TrainConfig, models: dict[str, ModelEntry], path: Path) -> CurveEntry:
    where = f"{path}: [annotation_curve]"
    _unknown(entry, CURVE_KEYS, where)
    if entry.get("start") not in models:
        raise RecipeError(f"{where}: start {entry.get('start')!r} is not a [models] entry")
    counts = tuple(None if c == ALL_IMAGES else c for c in entry.get("counts", []))
    if not counts or any(c is not None and (not isinstance(c, int) or c < 1) for c in counts):
        raise RecipeError(f"{where}: counts must be a non-empty list of whole numbers ≥ 1 or {ALL_IMAGES!r}")
    seeds = tuple(int(v) for v in entry.get("seeds", [base.seed]))
    penalties, baselines = dict(entry.get("penalties", {})), dict(entry.get("baselines", {}))
    if not penalties:
        raise RecipeError(f"{where}: name at least one penalty (penalties = {{rrr = 0.0154}})")
    settings = {k: entry[k] for k in CURVE_SETTINGS if k in entry}
    test_images = entry.get("test_images")
    if test_images is not None and (not isinstance(test_images, int) or test_images < 1):
        raise RecipeError(f"{where}: test_images must be a whole number ≥ 1 (leave it out for the whole test set)")
    start = models[entry["start"]].config
    for defense, lam, as_penalty in [*((d, v, True) for d, v in penalties.items()),
                                     *((d, v, False) for d, v in baselines.items())]:
        try:
            masked = defense_spec(defense).masked
        except ValueError as exc:
            raise RecipeError(f"{where}: {exc}") from exc
        if masked != as_penalty:
            raise RecipeError(f"{where}: {defense!r} belongs in " + ("penalties (it uses annotations)" if masked
                                                                     else "baselines (it uses no annotations)"))
        config = replace(start, defense=defense, lam=float(lam), init_from=None, name=None, **settings,
                         annotations=None if not masked else "annotations.npz")
        try:
            config.validate()
        except ValueError as exc:
            raise RecipeError(f"{where}: {defense}: {exc}") from exc
    return CurveEntry(entry["start"], counts, seeds, {k: float(v) for k, v in penalties.items()},
                      {k: float(v) for k, v in baselines.items()}, settings, test_images)


def _check_parents(models: dict[str, ModelEntry], path: Path) -> None:
    for name, entry in models.items():
        if entry.init_from is not None and entry.init_from not in models:
            raise RecipeError(f"{path}: [models.{name}]: init_from {entry.init_from!r} is not a [models] entry")
    for name in models:
        seen = [name]
        while (parent := models[seen[-1]].init_from) is not None:
            if parent in seen:
                raise RecipeError(f"{path}: [models.{name}]: init_from cycle {' → '.join([*seen, parent])}")
            seen.append(parent)


def entry_settings(entry: ModelEntry) -> dict:
    """What a card trained from `entry` must record, as `comparable_settings` compares them."""
    return comparable_settings({**entry.config.settings(), "init_from": entry.init_from})
