"""What bringing your own model and data costs, each against a baseline measured in the same run:

1. one slider move on the Saliency/Attack pages (FGSM + saliency + predictions of one image on 4 models) with
   torchvision's ResNet-18 at 3×32×32, against the same move on 4 zoo CNNs (goal: ≤ 150 ms);
2. a gradreg training step of ResNet-18 with plain autograd double backprop, against a normal step (goal ≤ 3×);
3. registering a folder of 10,000 PNG images, and loading it again (its sha256 checked), against reading the
   same PNG files' bytes (goals: ≤ 30 s and ≤ 3 s).

Usage: python -m benchmarks.your_model [--repeats 10] [--batch-size 64] [--images 10000]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks.common import compare, frozen_models, report, training_step
from gradviz.attacks.registry import get_attack
from gradviz.attribution.methods import explain
from gradviz.machine import cpu_name
from gradviz.nets.architecture import channels_last, frozen
from gradviz.nets.external import frame, import_base
from gradviz.training.defenses import LossSettings

RESNET = import_base("torchvision.models:resnet18", {"num_classes": 10})


def resnet() -> torch.nn.Module:
    return frame(RESNET, (3, 32, 32), 10, "a 3×32×32 dataset")


def slider_moves(repeats: int) -> None:
    torch.manual_seed(0)
    zoo = frozen_models(4, "cpu")
    nets = {f"r{i}": frozen(channels_last(resnet())) for i in range(4)}  # as the pages hold models on CPU
    grey, colour = torch.rand(1, 1, 28, 28), torch.rand(1, 3, 32, 32)
    label = torch.tensor([3])

    def move(models, x):
        def run():
            adv = get_attack("fgsm").generate(next(iter(models.values())), x, label, 0.3)
            explain(models, adv, 3, "gradient-ce")
        return run

    medians = compare({"zoo CNN ×4: FGSM + saliency + predictions": move(zoo, grey),
                       "ResNet-18 ×4: FGSM + saliency + predictions": move(nets, colour)}, "cpu", repeats)
    report(medians, "zoo CNN ×4: FGSM + saliency + predictions", "one slider move, one image")


def training_steps(repeats: int, batch_size: int) -> None:
    torch.manual_seed(0)
    x, y = torch.rand(batch_size, 3, 32, 32), torch.randint(0, 10, (batch_size,))
    medians = compare({
        "ResNet-18 normal step": training_step(channels_last(resnet()).train(), x, y, LossSettings("normal")),
        "ResNet-18 gradreg step (plain autograd)": training_step(channels_last(resnet()).train(), x, y,
                                                                 LossSettings("gradreg", lam=10.0)),
    }, "cpu", repeats)
    report(medians, "ResNet-18 normal step", f"one training step, batch {batch_size} of 3×32×32")


def registration(images: int) -> None:
    from gradviz.data.adding import add_dataset
    from gradviz.data.datasets import load_arrays

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as work:
        root = Path(work) / "folder"
        for k in range(images):
            split = "test" if k % 6 == 0 else "train"
            folder = root / split / f"class-{k % 10}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), np.uint8)).save(folder / f"{k:05d}.png")
        start = time.perf_counter()
        for path in root.rglob("*.png"):
            path.read_bytes()
        read = time.perf_counter() - start
        start = time.perf_counter()
        add_dataset("bench", root, root=Path(work) / "registry")
        added = time.perf_counter() - start
        os.environ["GRADVIZ_USER_DATASETS"] = str(Path(work) / "registry")
        start = time.perf_counter()
        load_arrays("bench")
        loaded = time.perf_counter() - start
    report({"reading the files' bytes": read, "gradviz data add (decode, check, hash, write)": added,
            "loading it again (sha256 checked)": loaded}, "reading the files' bytes",
           f"a folder of {images:,} PNG images of 3×32×32")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--images", type=int, default=10_000)
    args = parser.parse_args()
    print(f"{cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    slider_moves(args.repeats)
    training_steps(args.repeats, args.batch_size)
    registration(args.images)


if __name__ == "__main__":
    main()
