"""Choose an explanation penalty's λ on held-out training images, never on the test set (docs/RECIPE.md, "RRR-G's λ").

Fine-tunes a shortcut-trained model with N annotated images (the dataset's own masks) for each λ and scores it on
5,000 held-out training images without their swatch (a decoy's base images, held out with the same seed).
Usage: python scripts/annotation_lambda.py decoy-mnist decoy-mnist-normal rrr-g 0.1 1 10 100 1000 10000
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import replace

import numpy as np

from gradviz.data.annotations import from_generated_masks, save_annotations
from gradviz.data.datasets import load_masks
from gradviz.data.ground_truth import BASE
from gradviz.evaluation.runs.matrix import correct_counts
from gradviz.nets.cards import list_models
from gradviz.training.fine_tune import fine_tune_config
from gradviz.training.loop import train_model, training_masks, training_split

HOLDOUT, ANNOTATED, STEPS = 5000, 1600, 500


def main(dataset: str, model: str, defense: str, lams: list[float]) -> None:
    card = next(c for c in list_models() if c["name"] == model)
    annotations = save_annotations(from_generated_masks(dataset, load_masks(dataset, "train").numpy(),
                                                        np.arange(ANNOTATED)), f"/tmp/{dataset}-{ANNOTATED}.npz")
    for lam in lams:
        config = replace(fine_tune_config(card, str(annotations), defense, STEPS, lam=lam), holdout=HOLDOUT)
        fit, held = training_split(config)
        _, (plain, labels) = training_split(replace(config, dataset=BASE[dataset], defense="normal", lam=0.0,
                                                    annotations=None))
        start = time.perf_counter()
        trained, _ = train_model(config, (*fit, training_masks(config)), progress=False)
        trained.eval()
        print(json.dumps({"dataset": dataset, "defense": defense, "lam": lam,
                          "held_out_without_swatch": correct_counts(trained, plain, labels, 250) / len(labels),
                          "held_out_with_swatch": correct_counts(trained, *held, 250) / len(held[1]),
                          "seconds": round(time.perf_counter() - start)}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], [float(v) for v in sys.argv[4:]])
