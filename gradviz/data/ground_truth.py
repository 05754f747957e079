"""Datasets that know where a model should look, generated deterministically from the official MNIST files.

- **decoy-mnist** (Ross, Hughes & Doshi-Velez, "Right for the Right Reasons", IJCAI 2017; the construction of
  their code, dtak/rrr): every digit gets a 4×4 swatch in one of the four corners, chosen at random. On
  training digits its grey is 255 − 25·y, so it gives the label away; on test digits it is the grey of a
  random class, so a model that reads the swatch falls to chance. Mask: the swatch (the shortcut).
- **decoy-fashion-mnist** (Schramowski et al., "Making deep neural networks right for the right scientific reasons
  by interacting with their explanations", Nature Machine Intelligence 2020; Friedrich et al. 2023 use it too):
  the same construction on the official Fashion-MNIST, so a claim about shortcuts is checked on two datasets.
- **block-mnist** (Shah, Jain & Netrapalli, "Do Input Gradients Highlight Discriminative Features?",
  NeurIPS 2021): MNIST's 0s and 1s, each stacked with a null block in random order into a 56×28 image; only
  the digit (signal) block says the class, the null block (a square with both diagonals, the same for every
  image) says nothing. Mask: the signal block.

Draws come from numpy generators seeded per dataset and split, so the same MNIST files always give the same
images, bit for bit; the sha256 of each generated split is what a model card records.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np

SWATCH = 4  # pixels on a side
SWATCH_STEP = 25  # grey = 255 − 25·class
SEEDS = {"decoy-mnist": 1703_03717, "block-mnist": 2102_12781, "decoy-fashion-mnist": 2001_05371}  # arXiv numbers
SPLIT_OFFSET = {"train": 0, "test": 1}
BLOCK_CLASSES = (0, 1)
MASK_MEANING = {
    "decoy-mnist": ("swatch", "the label-coded swatch: the shortcut a right-for-the-right-reasons model ignores"),
    "decoy-fashion-mnist": ("swatch", "the label-coded swatch: the shortcut a right-for-the-right-reasons model "
                                      "ignores"),
    "block-mnist": ("signal block", "the digit block: the only place the class can be read"),
}
EVIDENCE_INSIDE_MASK = {"decoy-mnist": False, "block-mnist": True, "decoy-fashion-mnist": False}  # evidence in mask?
DECOYS = ("decoy-mnist", "decoy-fashion-mnist")  # a label-coded swatch on train, a random one on test


def _rng(name: str, split: str) -> np.random.Generator:
    return np.random.default_rng([SEEDS[name], SPLIT_OFFSET[split]])


def decoy(images: np.ndarray, labels: np.ndarray, split: str,
          name: str = "decoy-mnist") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A decoy dataset from uint8 images [N, 28, 28]: (images, labels, swatch masks [N, 28, 28] bool), drawn from
    `name`'s seed."""
    rng = _rng(name, split)
    n = len(images)
    rows, cols = rng.integers(0, 2, n), rng.integers(0, 2, n)
    coded = labels if split == "train" else rng.integers(0, 10, n)
    grey = (255 - SWATCH_STEP * coded).astype(np.uint8)
    x, mask = images.copy(), np.zeros(images.shape, dtype=bool)
    edge = images.shape[1] - SWATCH
    for r in (0, 1):
        for c in (0, 1):
            chosen = (rows == r) & (cols == c)
            window = (chosen, slice(r * edge, r * edge + SWATCH), slice(c * edge, c * edge + SWATCH))
            x[window] = grey[chosen, None, None]
            mask[window] = True
    return x, labels.copy(), mask


def null_block(size: int = 28, side: int = 16) -> np.ndarray:
    """The null block: a square outline with both diagonals, centred on black, identical in every image."""
    block = np.zeros((size, size), dtype=np.uint8)
    lo, hi = (size - side) // 2, (size - side) // 2 + side - 1
    block[lo, lo:hi + 1] = block[hi, lo:hi + 1] = block[lo:hi + 1, lo] = block[lo:hi + 1, hi] = 255
    steps = np.arange(side)
    block[lo + steps, lo + steps] = block[lo + steps, hi - steps] = 255
    return block


def block(images: np.ndarray, labels: np.ndarray, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Block MNIST from uint8 digits: the 0s and 1s (in file order), each above or below the null block."""
    keep = np.isin(labels, BLOCK_CLASSES)
    digits, y = images[keep], labels[keep]
    signal_on_top = _rng("block-mnist", split).integers(0, 2, len(digits)).astype(bool)
    null = np.broadcast_to(null_block(digits.shape[1]), digits.shape)
    top = np.where(signal_on_top[:, None, None], digits, null)
    bottom = np.where(signal_on_top[:, None, None], null, digits)
    ones, zeros = np.ones(digits.shape, dtype=bool), np.zeros(digits.shape, dtype=bool)
    mask = np.concatenate([np.where(signal_on_top[:, None, None], ones, zeros),
                           np.where(signal_on_top[:, None, None], zeros, ones)], axis=1)
    return np.concatenate([top, bottom], axis=1), np.searchsorted(BLOCK_CLASSES, y).astype(np.int64), mask


GENERATORS: dict[str, Callable[[np.ndarray, np.ndarray, str], tuple[np.ndarray, np.ndarray, np.ndarray]]] = {
    "decoy-mnist": decoy,
    "block-mnist": block,
    "decoy-fashion-mnist": lambda images, labels, split: decoy(images, labels, split, "decoy-fashion-mnist"),
}
BASE = {"decoy-mnist": "mnist", "block-mnist": "mnist", "decoy-fashion-mnist": "fashion-mnist"}  # generated from


def evidence_region(name: str, mask: np.ndarray) -> np.ndarray:
    """Where a model right for the right reasons finds its evidence: Block MNIST's signal block, everything but
    Decoy MNIST's swatch. The localisation metrics score attribution against it."""
    return mask if EVIDENCE_INSIDE_MASK.get(name, False) else ~mask  # a registered dataset's masks mark what not to use


def swatch_codes(images: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """The class each decoy swatch's grey codes (255 − 25·class), from images in [0, 1] and their masks,
    both [N, …] of one shape."""
    images, masks = np.asarray(images, dtype=np.float64), np.asarray(masks, dtype=bool)
    grey = (images * masks).reshape(len(images), -1).sum(1) / np.maximum(masks.reshape(len(masks), -1).sum(1), 1)
    return np.clip(np.round((255 - 255 * grey) / SWATCH_STEP), 0, 9).astype(np.int64)


def swatch_class(image: np.ndarray, mask: np.ndarray) -> int:
    """The class one image's swatch codes (swatch_codes of a batch of one)."""
    return int(swatch_codes(np.asarray(image)[None], np.asarray(mask)[None])[0])


def split_sha256(images: np.ndarray, labels: np.ndarray, mask: np.ndarray) -> str:
    """One sha256 over a generated split's images, labels and masks (shapes included): what cards record."""
    digest = hashlib.sha256()
    for array in (images, labels, mask):
        digest.update(str(array.shape).encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()
