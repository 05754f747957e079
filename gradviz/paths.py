"""Every folder gradviz reads or writes, in one place, each with the environment variable that moves it.

Committed folders (the zoo, recipes, results, sample images, long runs carried between machines) live in the
checkout; everything a user makes lives under GRADVIZ_HOME (models, checkpoints, the study database) or
GRADVIZ_CACHE (data, experiments).
"""
from __future__ import annotations

import os
import re
import threading
from datetime import datetime
from pathlib import Path

from gradviz.names import whole_match

REPO_ROOT = Path(__file__).resolve().parent.parent
ZOO_DIR = REPO_ROOT / "models"  # the committed pretrained zoo
RECIPE_DIR = REPO_ROOT / "recipes"
COMMITTED_RESULTS = REPO_ROOT / "docs" / "results"
SAMPLES_DIR = REPO_ROOT / "assets" / "samples"


def _env(name: str, default: Path) -> Path:
    return Path(os.environ.get(name) or default)


def home_dir() -> Path:
    """A user's own work: trained models, checkpoints, evaluation results, the study database."""
    return _env("GRADVIZ_HOME", Path.home() / ".gradviz")


def cache_dir() -> Path:
    """Derived and fetched files that can be made again: data sets, experiment results."""
    return _env("GRADVIZ_CACHE", Path.home() / ".cache" / "gradviz")


def user_model_dir() -> Path:
    """Where models trained by a user (CLI default or browser) go; never the committed zoo."""
    return _env("GRADVIZ_USER_MODELS", home_dir() / "models")


def user_dataset_dir() -> Path:
    """Datasets a user registers (gradviz data add): one folder per dataset, its arrays and its card."""
    return _env("GRADVIZ_USER_DATASETS", home_dir() / "datasets")


def checkpoint_dir() -> Path:
    """Where unfinished training runs keep their checkpoints until they finish."""
    return _env("GRADVIZ_CHECKPOINTS", home_dir() / "checkpoints")


def carry_dir() -> Path:
    """Long runs carried in the checkout from one machine to the next (gradviz.experiments.carry)."""
    return _env("GRADVIZ_CARRY", REPO_ROOT / "carried")


def user_results_dir() -> Path:
    """Evaluations a user starts from the dashboard."""
    return user_model_dir().parent / "results"


_RESERVED: set[Path] = set()
_RESERVING = threading.Lock()


def new_results_folder(stem: str) -> Path:
    """A folder under `user_results_dir()` that no other run has written or is about to write:
    <stem>-<YYYYmmdd-HHMMSS>, then -2, -3… Two runs started within one second (two people, or two different runs
    of one) would otherwise write into the same folder and the first result would be lost."""
    base = user_results_dir() / f"{stem}-{datetime.now():%Y%m%d-%H%M%S}"
    with _RESERVING:
        path, k = base, 1
        while path.exists() or path in _RESERVED:
            k += 1
            path = base.with_name(f"{base.name}-{k}")
        _RESERVED.add(path)
    return path


def experiments_dir() -> Path:
    """Results of recipe builds and sweeps: outside the checkout, so long runs survive a fresh work tree."""
    return _env("GRADVIZ_RESULTS", cache_dir() / "experiments")


def study_db_path() -> Path:
    """The study's SQLite file when no GRADVIZ_DB_URL names another database."""
    return home_dir() / "study" / "study.sqlite"


NAME_RULE = "1 to 64 letters, digits, '.', '_' or '-', starting with a letter or a digit"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class UnsafeNameError(ValueError):
    """A name that would leave its folder or is not a plain file name."""


def safe_name(name: object, what: str = "name") -> str:
    """`name` if it is a plain, short file name (NAME_RULE), else UnsafeNameError naming the rule.

    Every name that becomes a path (models, checkpoints, trials, results, exports) passes through here: a name
    from a form, a URL, a card or a recipe is treated as hostile until it matches."""
    if not whole_match(_NAME, name):
        raise UnsafeNameError(f"{what} {name!r} is refused: use {NAME_RULE}")
    return name


def path_inside(folder: str | Path, name: str, suffix: str = "", what: str = "name") -> Path:
    """folder/name+suffix, once the name is safe and the path (links resolved) stays inside the folder."""
    folder = Path(folder)
    path = folder / f"{safe_name(name, what)}{suffix}"
    if not path.resolve().is_relative_to(folder.resolve()):
        raise UnsafeNameError(f"{what} {name!r} is refused: it leads out of {folder}")
    return path


def result_folders_holding(file_name: str) -> dict[str, Path]:
    """Folders of results holding `file_name`, labelled "name (committed)" for the runs in docs/results, then
    "name (yours)" for the user's."""
    found = {}
    for root, whose in ((COMMITTED_RESULTS, "committed"), (user_results_dir(), "yours")):
        for path in sorted(root.glob(f"*/{file_name}")) if root.is_dir() else []:
            found[f"{path.parent.name} ({whose})"] = path.parent
    return found
