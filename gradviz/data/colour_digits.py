"""A 3-channel image folder written from real digits, for trying gradviz on colour data it did not ship: each MNIST
digit resized to 32×32 with its ink and paper tinted from a five-colour palette (seeded), written as
`OUT/train|test/digit-K/NNNNN.png` — the layout `gradviz data add` reads.

    python -m gradviz.data.colour_digits OUT [--train 10000] [--test 2000] [--size 32]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

PALETTE = np.array([[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48]], float) / 255


def write_colour_folder(root: Path, digits: np.ndarray, labels: np.ndarray, per_split: dict[str, slice],
                        size: int = 32, seed: int = 0) -> Path:
    """root/SPLIT/digit-K/NNNNN.png for the digits [N, H, W] (uint8) each split's slice selects."""
    rng = np.random.default_rng(seed)
    for split, part in per_split.items():
        for k in range(*part.indices(len(digits))):
            grey = np.asarray(Image.fromarray(np.asarray(digits[k]).squeeze()).resize((size, size), Image.BILINEAR),
                              float)[..., None] / 255
            ink, paper = PALETTE[rng.integers(5)], PALETTE[rng.integers(5)] * 0.3
            folder = root / split / f"digit-{int(labels[k])}"
            folder.mkdir(parents=True, exist_ok=True)
            rgb = np.rint((grey * ink + (1 - grey) * paper) * 255).astype(np.uint8)
            Image.fromarray(rgb).save(folder / f"{k:05d}.png")
    return root


def write_colour_digits(root: Path, train: int, test: int, size: int = 32) -> Path:
    """The first `train` MNIST training digits and the first `test` test digits, tinted, as an image folder."""
    from gradviz.data.datasets import load_arrays

    mnist = load_arrays("mnist")
    write_colour_folder(root, mnist.train_x, mnist.train_y, {"train": slice(0, train)}, size, seed=0)
    return write_colour_folder(root, mnist.test_x, mnist.test_y, {"test": slice(0, test)}, size, seed=1)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--train", type=int, default=10_000)
    parser.add_argument("--test", type=int, default=2_000)
    parser.add_argument("--size", type=int, default=32)
    args = parser.parse_args()
    print(f"wrote {write_colour_digits(args.out, args.train, args.test, args.size)}")
