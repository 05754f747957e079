"""Model cards as a table (what the Models page shows), and which models a page compares by default."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from gradviz.nets.cards import list_models

COLUMNS = ["name", "origin", "dataset", "defense", "lam", "eps", "temperature", "penalty",
           "clean_test_accuracy", "n_test", "width", "size_mb", "train_seconds", "device", "data_source"]


def model_table(cards: list[dict] | None = None) -> pd.DataFrame:
    """One row per model card, with the hyperparameters that define its defense."""
    cards = list_models() if cards is None else cards
    rows = [{**c, "width": c.get("architecture", {}).get("width"),
             "size_mb": round(c.get("size_bytes", 0) / 1e6, 2)} for c in cards]
    return pd.DataFrame(rows, columns=COLUMNS)


# What the Models page shows of a card, in order, with the header a reader sees (ids stay where a user types them).
DISPLAY = {"name": "model", "origin": "origin", "defense": "defense", "lam": "λ", "eps": "ε",
           "temperature": "T", "penalty": "penalty", "clean_test_accuracy": "clean accuracy", "width": "FC width",
           "size_mb": "size (MB)", "train_seconds": "training time"}
DETAILS = {"n_test": "test images", "device": "trained on", "data_source": "data"}  # behind "more columns"


def display_table(table: pd.DataFrame, details: bool = False) -> pd.DataFrame:
    """`model_table` for reading: human headers, only the settings that mean something for each model as text
    (a blank where a defense has none, never "None"), training time in minutes; `details` adds the provenance
    columns."""
    columns = DISPLAY | (DETAILS if details else {})
    shown = table[list(columns)].copy()

    def text(value, fmt: str) -> str:
        return "" if value is None or pd.isna(value) else format(value, fmt)

    # A card records a setting its defense ignores at its neutral value (λ 0, T 1): shown blank.
    for column, fmt, neutral in (("lam", "g", 0), ("eps", "g", None), ("temperature", "g", 1), ("width", ",", None)):
        shown[column] = [text(None if v == neutral else v, fmt) for v in shown[column]]
    shown["train_seconds"] = [text(v / 60, ".0f") + " min" if pd.notna(v) else "" for v in shown["train_seconds"]]
    shown["penalty"] = [text(v, "s") if d in ("gradreg", "gradreg-uniform", "gradreg+advtrain", "rrr") else ""
                        for v, d in zip(shown["penalty"], shown["defense"])]
    for column in ("n_test", "device", "data_source"):
        if column in shown:
            shown[column] = ["" if v is None or pd.isna(v) else str(v) for v in shown[column]]
    return shown.rename(columns=columns)


def default_models(cards: Mapping[str, dict], defenses: Sequence[str], limit: int = 4) -> list[str]:
    """The first model of each defense in `defenses`, in that order (at most `limit`); `cards` maps names to cards in
    listing order. An adopted paper-scale pair (a card with `zoo_role`) is the paper's own comparison, so it stands
    in for normal and gradreg. With none of those defenses present: the first `limit` models."""
    by_defense = {c["defense"]: name for name, c in reversed(list(cards.items()))}
    by_defense |= {c["defense"]: name for name, c in cards.items()
                   if c.get("zoo_role") and c["defense"] in ("normal", "gradreg")}
    chosen = [by_defense[d] for d in defenses if d in by_defense]
    return (chosen or list(cards))[:limit]
