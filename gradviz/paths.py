"""Every folder gradviz reads or writes, in one place, each with the environment variable that moves it.

Committed folders (the zoo, recipes, results, sample images) live in the checkout; everything a user makes
lives under GRADVIZ_HOME (models, checkpoints, the study database) or GRADVIZ_CACHE (data, experiments).
"""
from __future__ import annotations

import os
from pathlib import Path

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


def checkpoint_dir() -> Path:
    """Where unfinished training runs keep their checkpoints until they finish."""
    return _env("GRADVIZ_CHECKPOINTS", home_dir() / "checkpoints")


def user_results_dir() -> Path:
    """Evaluations a user starts from the dashboard."""
    return user_model_dir().parent / "results"


def experiments_dir() -> Path:
    """Results of recipe builds and sweeps: outside the checkout, so long runs survive a fresh work tree."""
    return _env("GRADVIZ_RESULTS", cache_dir() / "experiments")


def study_db_path() -> Path:
    """The study's SQLite file when no GRADVIZ_DB_URL names another database."""
    return home_dir() / "study" / "study.sqlite"
