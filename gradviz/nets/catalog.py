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


def default_models(cards: Mapping[str, dict], defenses: Sequence[str], limit: int = 4) -> list[str]:
    """The first model of each defense in `defenses`, in that order (at most `limit`); `cards` maps names to cards in
    listing order. An adopted paper-scale pair (a card with `zoo_role`) is the paper's own comparison, so it stands
    in for normal and gradreg. With none of those defenses present: the first `limit` models."""
    by_defense = {c["defense"]: name for name, c in reversed(list(cards.items()))}
    by_defense |= {c["defense"]: name for name, c in cards.items()
                   if c.get("zoo_role") and c["defense"] in ("normal", "gradreg")}
    chosen = [by_defense[d] for d in defenses if d in by_defense]
    return (chosen or list(cards))[:limit]
