"""Model cards on disk: finding and reading them needs no torch, so listing models stays fast."""
from __future__ import annotations

import json
from pathlib import Path

from gradviz.paths import ZOO_DIR, user_model_dir

CARD_SUFFIX = ".json"


class ModelFileError(ValueError):
    """A model file is missing, tampered with, or not safetensors."""


def refuse_zoo_name(name: str) -> None:
    """A user model may not take a zoo model's name: it would hide the zoo model from everything that looks models
    up by name (the study's stimuli included)."""
    if (ZOO_DIR / f"{name}{CARD_SUFFIX}").is_file():
        raise ValueError(f"{name!r} is the name of a zoo model; choose another name for your model")


def free_user_name(base: str) -> str:
    """`base`, or `base-2`, `base-3` … when a zoo model has it: the name a user model gets when none was given
    (a normal MNIST model would otherwise be called mnist-normal, which the zoo's is)."""
    name, k = base, 1
    while (ZOO_DIR / f"{name}{CARD_SUFFIX}").is_file():
        k += 1
        name = f"{base}-{k}"
    return name


def require_dataset(cards: dict[str, dict], dataset: str) -> None:
    """Refuse models trained on another dataset than the one they are about to see."""
    wrong = [name for name, card in cards.items() if card["dataset"] != dataset]
    if wrong:
        raise ValueError(f"models {wrong} were trained on another dataset than {dataset}")


def read_card(path: Path) -> dict:
    try:
        card = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path}: not a readable model card ({exc})") from exc
    if not isinstance(card, dict) or "weights_file" not in card:
        raise ModelFileError(f"{path}: not a gradviz model card (no weights_file)")
    return {**card, "card_path": str(path)}


FILE_FIELDS = ("card_path", "weights_file", "sha256", "size_bytes")


def card_fields(card: dict) -> dict:
    """A card less what its file gives it (its path, weights file, hash, size): what saving the model anew
    starts from, since save_model writes those afresh."""
    return {k: v for k, v in card.items() if k not in FILE_FIELDS}


def list_models(directories: list[str | Path] | None = None) -> list[dict]:
    """Cards of every model in the zoo and the user model folder, zoo first, sorted by name."""
    directories = directories or [ZOO_DIR, user_model_dir()]
    cards = []
    for origin, directory in zip(("zoo", "user", *["extra"] * 8), map(Path, directories)):
        for path in sorted(directory.glob(f"*{CARD_SUFFIX}")) if directory.is_dir() else []:
            try:
                cards.append({**read_card(path), "origin": origin})
            except ModelFileError:
                continue  # a stray JSON file is not a model; load_model names the problem when asked
    return cards
