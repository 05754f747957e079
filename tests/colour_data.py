"""Colour image folders written from real MNIST digits (ink and paper colours drawn per image, seeded)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

PALETTE = np.array([[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48]], float) / 255


def write_colour_folder(root: Path, digits, labels, per_split: dict[str, slice], size: int = 32,
                        classes: tuple[int, ...] | None = None) -> Path:
    """root/train|test/digit-K/NNNNN.png: each digit resized to size×size, its ink and paper tinted."""
    rng = np.random.default_rng(0)
    for split, part in per_split.items():
        for k in range(*part.indices(len(digits))):
            label = int(labels[k])
            if classes is not None and label not in classes:
                continue
            grey = np.asarray(Image.fromarray(np.asarray(digits[k]).squeeze()).resize((size, size), Image.BILINEAR),
                              float)[..., None] / 255
            ink, paper = PALETTE[rng.integers(5)], PALETTE[rng.integers(5)] * 0.3
            folder = root / split / f"digit-{label}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.rint((grey * ink + (1 - grey) * paper) * 255).astype(np.uint8)).save(folder / f"{k:05d}.png")
    return root
