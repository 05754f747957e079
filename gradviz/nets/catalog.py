"""Model cards as a table: what the Models page shows."""
from __future__ import annotations

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
