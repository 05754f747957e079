"""Fine-tune an existing model from a person's annotations: the run the Annotate page starts and the CLI can repeat.

`gradviz train --annotations FILE --init-from MODEL --defense rrr|rrr-g|counterexamples` is the same run; this
module only fills in what the page does not ask for from the model's own card (architecture, dataset).
"""
from __future__ import annotations

from gradviz.training.config import TrainConfig
from gradviz.training.defenses import MASKED, defense_spec

FINE_TUNE_LR = 1e-3


def fine_tune_config(card: dict, annotations: str, defense: str, steps: int, lam: float | None = None,
                     name: str | None = None, device: str = "cpu", batch_size: int = 64) -> TrainConfig:
    """A run that starts from the model of `card` and trains `steps` steps on its dataset with `defense` on the
    images `annotations` marks (plain cross-entropy on the rest)."""
    if defense not in MASKED:
        raise ValueError(f"fine-tuning from annotations takes {', '.join(sorted(MASKED))}, not {defense!r}")
    lam = (defense_spec(defense).suggested_lam or 0.0) if lam is None else lam
    common = {"dataset": card["dataset"], "defense": defense, "lam": lam if defense_spec(defense).takes_lam else 0.0,
              "steps": steps, "batch_size": batch_size, "lr": FINE_TUNE_LR, "annotations": annotations,
              "name": name, "device": device}
    architecture = card.get("architecture", {})
    if architecture.get("name", "PaperCNN") == "PaperCNN":
        return TrainConfig(**common, init_from=card["name"], width=int(architecture["width"]),
                           layers=architecture.get("layers", "zoo"))
    return TrainConfig(**common, model=card["name"])  # a model from outside: fine-tuned from its weights
