"""Register a user's dataset: an image folder (`PATH/train|test/<class>/*.png|jpg`) or an `.npz` (x_train, y_train,
x_test, y_test; optional masks_train|masks_test — True where a model must not look, as RRR's annotations —
and class_names), checked, converted to uint8 arrays and written with
its card (gradviz.data.registered) — all at once or not at all.

Images decode only through the allow-listed decoders and limits that uploads use (gradviz.data.images); nothing
is unpickled. Mixed image sizes are refused unless `resize` names one size for all (bilinear).
"""
from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PIL import Image

from gradviz.data.classes import BUILTIN_CLASS_NAMES
from gradviz.data.images import MAX_BYTES, ImageError, open_image
from gradviz.data.registered import ARRAYS_FILE, CARD_FILE, dataset_folder, registered_card
from gradviz.files import sha256_file
from gradviz.names import whole_match
from gradviz.paths import safe_name, user_dataset_dir

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
SPLITS = ("train", "test")
MAX_IMAGES = 500_000
MAX_SIDE = 1024  # a side longer than this is refused: saliency and attacks of such images do not fit the tool
MAX_ARRAY_BYTES = 8 << 30
FOLDER_ORDER_SEED = 0  # an image folder's images are stored in this seeded order, not the folders' class order
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
CLASS_NAME_RULE = "1 to 64 letters, digits, spaces or . , ' ( ) _ -, starting with a letter or a digit"
_CLASS_NAME = re.compile(r"\w[\w .,'()-]{0,63}")


class DatasetInputError(ValueError):
    """What the user gave cannot become a dataset; the message says what and where."""


def parse_size(text: str | None) -> tuple[int, int] | None:
    """"32x32" → (32, 32) (height × width); None or "" → None (no resizing: mixed sizes are refused)."""
    if not text:
        return None
    match = re.fullmatch(r"(\d{1,4})[x×](\d{1,4})", text.strip())
    if not match or not all(0 < int(v) <= MAX_SIDE for v in match.groups()):
        raise DatasetInputError(f"size {text!r}: use HEIGHTxWIDTH, each 1 to {MAX_SIDE}, e.g. 32x32")
    return int(match.group(1)), int(match.group(2))


def _class_name(name: str, where: str) -> str:
    if not whole_match(_CLASS_NAME, name):
        raise DatasetInputError(f"{where}: class name {name!r} is refused: use {CLASS_NAME_RULE}")
    return name


# -- image folders --------------------------------------------------------------------------------------------------

def _class_folders(root: Path, split: str) -> dict[str, list[Path]]:
    folder = root / split
    if not folder.is_dir() or folder.is_symlink():
        raise DatasetInputError(f"{folder}: missing; an image folder holds train/<class>/ and test/<class>/")
    classes = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if sub.is_symlink():
            raise DatasetInputError(f"{sub}: a link; gradviz reads only real folders inside {root}")
        files = sorted(p for p in sub.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
        classes[_class_name(sub.name, str(sub))] = files
    if not any(classes.values()):
        raise DatasetInputError(f"{folder}: no .png or .jpg images in any class folder (an empty split)")
    return classes


def _decode(path: Path, mode: str, size: tuple[int, int] | None) -> np.ndarray:
    if path.is_symlink() or not path.is_file():
        raise DatasetInputError(f"{path}: not a regular file")
    if path.stat().st_size > MAX_BYTES:
        raise DatasetInputError(f"{path}: {path.stat().st_size / 1e6:.1f} MB; the limit per image is "
                                f"{MAX_BYTES / 1e6:.0f} MB")
    try:
        image = open_image(path.read_bytes())
    except ImageError as exc:
        raise DatasetInputError(f"{path}: {exc}") from None
    if max(image.size) > MAX_SIDE:
        raise DatasetInputError(f"{path}: {image.width}×{image.height} pixels; the limit is {MAX_SIDE} per side")
    image = image.convert(mode)
    if size is not None and image.size != (size[1], size[0]):
        image = image.resize((size[1], size[0]), Image.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def _folder_mode(files: list[Path], channels: int | None) -> str:
    """"L" or "RGB": the `channels` asked for, else grey only when every image is grey."""
    if channels is not None:
        return {1: "L", 3: "RGB"}[channels]
    for path in files:
        try:
            if open_image(path.read_bytes()).mode not in ("L", "1", "I;16", "I", "LA"):
                return "RGB"
        except (ImageError, OSError):
            continue  # _decode names the file with its reason
    return "L"


def read_image_folder(root: Path, size: tuple[int, int] | None = None, channels: int | None = None,
                      progress: Callable[[int, int], None] | None = None) -> dict:
    """The arrays of an image folder: class names from train's folder names (test's must be among them)."""
    train, test = (_class_folders(root, split) for split in SPLITS)
    names = sorted(train)
    stray = sorted(set(test) - set(train))
    if stray:
        raise DatasetInputError(f"{root / 'test'}: classes {stray} have no training folder")
    files = [(split, names.index(c), p) for split, classes in (("train", train), ("test", test))
             for c, paths in classes.items() for p in paths]
    if len(files) > MAX_IMAGES:
        raise DatasetInputError(f"{root}: {len(files):,} images; the limit is {MAX_IMAGES:,}")
    mode = _folder_mode([p for _, _, p in files], channels)
    out = {split: ([], []) for split in SPLITS}
    shape = None
    for k, (split, label, path) in enumerate(files):
        image = _decode(path, mode, size)
        if shape is None:
            shape, first = image.shape, path
        elif image.shape != shape:
            raise DatasetInputError(f"{path} is {image.shape[1]}×{image.shape[0]} but {first} is "
                                    f"{shape[1]}×{shape[0]}: mixed sizes; pass --resize HxW to resize every image")
        out[split][0].append(image)
        out[split][1].append(label)
        if progress is not None:
            progress(k + 1, len(files))
    arrays = {"class_names": names, "source": f"image folder {root} ({len(files):,} files, shuffled, seed "
                                              f"{FOLDER_ORDER_SEED})"}
    for split in SPLITS:  # folder order is class order; shuffled, "the first n test images" span every class
        order = np.random.default_rng(FOLDER_ORDER_SEED).permutation(len(out[split][1]))
        arrays[f"x_{split}"] = np.stack(out[split][0])[order]
        arrays[f"y_{split}"] = np.array(out[split][1], dtype=np.int64)[order]
    return arrays


# -- .npz files ---------------------------------------------------------------------------------------------------

def _images(x: np.ndarray, key: str) -> np.ndarray:
    """uint8 [N, H, W] or [N, H, W, 3] from uint8 or float-in-[0, 1] arrays, NHWC or NCHW."""
    if x.ndim == 4 and x.shape[1] in (1, 3) and x.shape[-1] not in (1, 3):
        x = x.transpose(0, 2, 3, 1)  # NCHW → NHWC
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[-1] != 3):
        raise DatasetInputError(f"{key}: shape {x.shape}; use [N, H, W] (grey) or [N, H, W, 3] / [N, 3, H, W] (colour)")
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if x.dtype.kind == "f":
        if not np.isfinite(x).all() or x.min() < 0 or x.max() > 1:
            raise DatasetInputError(f"{key}: float images must lie in [0, 1] (found {x.min():g} to {x.max():g})")
        return np.rint(x * 255).astype(np.uint8)  # stored as 8-bit, as image files are
    raise DatasetInputError(f"{key}: dtype {x.dtype}; use uint8 in [0, 255] or float in [0, 1]")


def read_npz(path: Path) -> dict:
    """The arrays of an .npz (no pickled objects are ever loaded)."""
    if path.stat().st_size > MAX_ARRAY_BYTES:
        raise DatasetInputError(f"{path}: over the {MAX_ARRAY_BYTES >> 30} GiB limit")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError) as exc:
        raise DatasetInputError(f"{path}: not a readable .npz without pickled objects ({exc})") from None
    missing = [k for k in NPZ_KEYS if k not in arrays]
    if missing:
        raise DatasetInputError(f"{path}: missing {', '.join(missing)} (an .npz holds {', '.join(NPZ_KEYS)})")
    out = {k: _images(arrays[k], k) for k in ("x_train", "x_test")}
    for split in SPLITS:
        y = arrays[f"y_{split}"]
        if y.ndim != 1 or y.dtype.kind not in "iu" or len(y) != len(out[f"x_{split}"]):
            raise DatasetInputError(f"y_{split}: need one integer label per image of x_{split}")
        out[f"y_{split}"] = y.astype(np.int64)
        if f"masks_{split}" in arrays:
            mask = arrays[f"masks_{split}"]
            if mask.shape != out[f"x_{split}"].shape[:3]:
                raise DatasetInputError(f"masks_{split}: shape {mask.shape}; need {out[f'x_{split}'].shape[:3]} "
                                        "(one per image)")
            out[f"masks_{split}"] = mask.astype(bool)
    count = int(max(out["y_train"].max(initial=-1), out["y_test"].max(initial=-1))) + 1
    given = arrays.get("class_names")
    if given is not None and (given.ndim != 1 or given.dtype.kind != "U"):
        raise DatasetInputError("class_names: need a 1-D array of strings")
    names = [str(v) for v in given] if given is not None else [str(c) for c in range(count)]
    out["class_names"] = [_class_name(n, "class_names") for n in names]
    out["source"] = f".npz file {path.name}"
    return out


# -- checks and writing -------------------------------------------------------------------------------------------

def check_arrays(arrays: dict) -> None:
    """Refuse what no model could learn from: an empty split, one class, labels outside the classes, splits
    whose images differ in shape."""
    names = arrays["class_names"]
    if len(names) < 2 or len(set(names)) != len(names):
        raise DatasetInputError(f"a dataset needs at least two distinct classes, found {names}")
    for split in SPLITS:
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if len(x) == 0:
            raise DatasetInputError(f"the {split} split is empty")
        if y.min() < 0 or y.max() >= len(names):
            raise DatasetInputError(f"y_{split}: labels must lie in [0, {len(names) - 1}] for {len(names)} classes")
    if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
        raise DatasetInputError(f"train images are {arrays['x_train'].shape[1:]}, test images "
                                f"{arrays['x_test'].shape[1:]}: both splits need one shape")
    if len(np.unique(arrays["y_train"])) < 2:
        raise DatasetInputError("the train split holds only one class")
    height, width = arrays["x_train"].shape[1:3]
    if min(height, width) < 8 or max(height, width) > MAX_SIDE:
        raise DatasetInputError(f"images of {height}×{width}: each side must lie in [8, {MAX_SIDE}]")


def add_dataset(name: str, path: str | Path, resize: str | None = None, channels: int | None = None,
                replace: bool = False, progress: Callable[[int, int], None] | None = None,
                root: Path | None = None) -> dict:
    """Register `path` (an image folder or an .npz) as dataset `name`; returns its card.

    Written into a temporary folder beside the registry and renamed into place when complete, so a failure at
    any point leaves nothing registered (and an existing dataset of that name untouched).
    """
    safe_name(name, "dataset name")
    if name in BUILTIN_CLASS_NAMES:
        raise DatasetInputError(f"{name!r} is a built-in dataset; choose another name")
    if registered_card(name, root) is not None and not replace:
        raise DatasetInputError(f"a dataset named {name!r} is registered already (pass --replace to replace it)")
    if channels not in (None, 1, 3):
        raise DatasetInputError(f"channels must be 1 or 3, not {channels}")
    source = Path(path)
    if source.is_dir():
        arrays = read_image_folder(source, parse_size(resize), channels, progress)
    elif source.suffix == ".npz" and source.is_file():
        if resize or channels:
            raise DatasetInputError("--resize and --channels apply to image folders; convert an .npz before adding it")
        arrays = read_npz(source)
    else:
        raise DatasetInputError(f"{source}: neither a folder (train/<class>/…, test/<class>/…) nor an .npz file")
    check_arrays(arrays)
    return _write(name, arrays, root or user_dataset_dir())


def _write(name: str, arrays: dict, root: Path) -> dict:
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root, prefix=f".{name}."))
    try:
        stored = {k: v for k, v in arrays.items() if k.startswith(("x_", "y_", "masks_"))}
        np.savez(staging / ARRAYS_FILE, **stored)
        x = arrays["x_train"]
        card = {"name": name, "class_names": arrays["class_names"], "channels": 3 if x.ndim == 4 else 1,
                "height": int(x.shape[1]), "width": int(x.shape[2]), "n_train": len(x), "n_test": len(arrays["x_test"]),
                "has_masks": "masks_train" in stored and "masks_test" in stored, "source": arrays["source"],
                "sha256": sha256_file(staging / ARRAYS_FILE), "registered": datetime.now(UTC).isoformat(timespec="seconds")}
        (staging / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
        target = dataset_folder(name, root)
        if target.exists():
            retired = Path(tempfile.mkdtemp(dir=root, prefix=f".{name}.old."))
            target.rename(retired / name)
            staging.rename(target)
            shutil.rmtree(retired)
        else:
            staging.rename(target)
        return card
    finally:
        if staging.exists():
            shutil.rmtree(staging)
