"""Datasets a user registered (gradviz.data.adding writes them): one folder each under user_dataset_dir(), holding
`arrays.npz` (uint8 images, labels, optional masks) and `dataset.json`, its card.

Reading a card needs only json, so listing datasets stays light (gradviz.data.classes, the study page); loading
the arrays checks the sha256 the card recorded first, as the built-in datasets' files are checked.
"""
from __future__ import annotations

import json
from pathlib import Path

from gradviz.files import sha256_file
from gradviz.paths import path_inside, safe_name, user_dataset_dir

CARD_FILE = "dataset.json"
ARRAYS_FILE = "arrays.npz"
CARD_FIELDS = ("name", "class_names", "channels", "height", "width", "n_train", "n_test", "sha256", "source")


class RegisteredDatasetError(ValueError):
    """A registered dataset's files are missing, changed since registration, or not what its card says."""


def dataset_folder(name: str, root: Path | None = None) -> Path:
    """The folder of registered dataset `name` (a plain name; checked before it becomes a path)."""
    return path_inside(root or user_dataset_dir(), name, what="dataset name")


def registered_names(root: Path | None = None) -> list[str]:
    """Names of the registered datasets with a readable card, sorted."""
    root = root or user_dataset_dir()
    if not root.is_dir():
        return []
    return sorted(p.parent.name for p in root.glob(f"*/{CARD_FILE}") if _read(p) is not None)


def _read(path: Path) -> dict | None:
    try:
        card = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(card, dict) or any(k not in card for k in CARD_FIELDS):
        return None
    return card


def registered_card(name: str, root: Path | None = None) -> dict | None:
    """The card of registered dataset `name`, or None when there is none (or `name` is not a plain name)."""
    try:
        safe_name(name, "dataset name")
    except ValueError:
        return None
    return _read(dataset_folder(name, root) / CARD_FILE)


def verified_arrays_path(name: str, root: Path | None = None) -> tuple[Path, dict]:
    """The arrays file of `name` and its card, once the file's sha256 matches the card's."""
    card = registered_card(name, root)
    if card is None:
        raise RegisteredDatasetError(f"no registered dataset {name!r} (gradviz data add NAME PATH registers one)")
    path = dataset_folder(name, root) / ARRAYS_FILE
    if not path.is_file():
        raise RegisteredDatasetError(f"{path}: the arrays of dataset {name!r} are missing; register it again")
    found = sha256_file(path)
    if found != card["sha256"]:
        raise RegisteredDatasetError(f"{path}: sha256 {found[:16]}… differs from the {card['sha256'][:16]}… recorded "
                                     f"when {name!r} was registered (changed or damaged); register it again")
    return path, card
