"""Where a person said a model must not look (and, optionally, where it should): annotations of training images.

An annotation set belongs to one dataset and records, per annotated training image, a "not here" mask (what RRR,
RRR-G and counterexamples use), an optional "here" mask, when it was made, how (brush, box, lasso, or a dataset's
generated masks) and which model's saliency the person saw. Sets are `.npz` files of plain arrays (read with
`allow_pickle=False`), so a set can be exported, shared and imported; every import is checked against the dataset
before it can become a training mask. The page writes them under GRADVIZ_HOME/annotations/<dataset>/<model>.npz,
and `gradviz train --annotations FILE` reads them: the penalty applies to the annotated images, plain
cross-entropy to the rest.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gradviz.files import atomic_write
from gradviz.paths import home_dir, path_inside, safe_name

FORMAT = 1
KINDS = ("brush", "box", "lasso", "generated")  # how a region was drawn ("generated": a dataset's own masks)
MAX_BYTES = 256 * 1024 * 1024  # an annotation file larger than this is refused before it is read
ARRAYS = ("image_ids", "not_here", "here", "created", "kinds")


class AnnotationError(ValueError):
    """An annotation file or entry that cannot be used as it is; the message says what to change."""


@dataclass
class Annotations:
    """Annotations of one dataset's training images, one row per image (ids are indices into the train split)."""

    dataset: str
    height: int
    width: int
    model: str = ""  # whose saliency the person saw while annotating ("" when none was shown)
    image_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    not_here: np.ndarray | None = None  # bool [K, H, W]
    here: np.ndarray | None = None  # bool [K, H, W]
    created: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))  # Unix seconds
    kinds: np.ndarray = field(default_factory=lambda: np.zeros(0, "<U9"))

    def __post_init__(self):
        empty = np.zeros((0, self.height, self.width), dtype=bool)
        self.not_here = empty if self.not_here is None else self.not_here
        self.here = empty if self.here is None else self.here

    def __len__(self) -> int:
        return len(self.image_ids)

    def add(self, image_id: int, not_here: np.ndarray, here: np.ndarray | None = None, kind: str = "brush") -> None:
        """Annotate one image; an image annotated before is replaced (its new masks are what the person meant)."""
        not_here = _mask(not_here, (self.height, self.width), "not-here mask")
        here = np.zeros_like(not_here) if here is None else _mask(here, (self.height, self.width), "here mask")
        if kind not in KINDS:
            raise AnnotationError(f"unknown annotation kind {kind!r}; use one of {', '.join(KINDS)}")
        if not not_here.any():
            raise AnnotationError("mark at least one pixel where the model must not look")
        self.remove(image_id)
        self.image_ids = np.append(self.image_ids, np.int64(image_id))
        self.not_here = np.concatenate([self.not_here, not_here[None]])
        self.here = np.concatenate([self.here, here[None]])
        self.created = np.append(self.created, time.time())
        self.kinds = np.append(self.kinds, np.array([kind], dtype="<U9"))

    def remove(self, image_id: int) -> bool:
        """Forget one image's annotation (the page's undo); True if there was one."""
        keep = self.image_ids != image_id
        if keep.all():
            return False
        for name in ARRAYS:
            setattr(self, name, getattr(self, name)[keep])
        return True

    def training_masks(self, n_train: int) -> np.ndarray:
        """"Not here" masks [n_train, 1, H, W] aligned with the train split: zero (no penalty) where unannotated."""
        if len(self) and int(self.image_ids.max()) >= n_train:
            raise AnnotationError(f"image id {int(self.image_ids.max())} is past the {n_train} training images")
        masks = np.zeros((n_train, 1, self.height, self.width), dtype=bool)
        masks[self.image_ids, 0] = self.not_here
        return masks


def _mask(mask: np.ndarray, shape: tuple[int, int], what: str) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.shape != shape:
        raise AnnotationError(f"{what} is {mask.shape}, the dataset's images are {shape}")
    if mask.dtype != bool and not np.isin(mask, (0, 1)).all():
        raise AnnotationError(f"{what} must hold 0/1 or booleans")
    return mask.astype(bool)


def save_annotations(annotations: Annotations, path: Path) -> Path:
    """Write `annotations` to `path` (.npz) atomically: a reader sees the old set or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = json.dumps({"format": FORMAT, "dataset": annotations.dataset, "model": annotations.model,
                       "height": annotations.height, "width": annotations.width})

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, meta=np.array(meta), **{name: getattr(annotations, name) for name in ARRAYS})

    atomic_write(path, write)
    return path


def load_annotations(path: str | Path, dataset: str | None = None, image_shape: tuple[int, int] | None = None,
                     n_train: int | None = None) -> Annotations:
    """An annotation set from `path`, checked: plain arrays only, the right shapes and types, ids unique and (given
    `n_train`) inside the train split, and (given `dataset`/`image_shape`) made for that dataset."""
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(f"{path}: no such annotation file")
    if path.stat().st_size > MAX_BYTES:
        raise AnnotationError(f"{path}: larger than {MAX_BYTES >> 20} MiB")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise AnnotationError(f"{path}: not an annotation file (.npz of plain arrays): {exc}") from None
    missing = [k for k in ("meta", *ARRAYS) if k not in arrays]
    if missing:
        raise AnnotationError(f"{path}: missing {', '.join(missing)}; export annotations from gradviz to get one")
    meta = _meta(arrays.pop("meta"), path)
    annotations = Annotations(meta["dataset"], meta["height"], meta["width"], meta["model"])
    k = len(arrays["image_ids"])
    _check_arrays(arrays, k, (meta["height"], meta["width"]), path)
    for name in ARRAYS:
        setattr(annotations, name, arrays[name])
    if dataset is not None and annotations.dataset != dataset:
        raise AnnotationError(f"{path}: annotations of {annotations.dataset!r}, not of {dataset!r}")
    if image_shape is not None and (annotations.height, annotations.width) != tuple(image_shape):
        raise AnnotationError(f"{path}: masks of {annotations.height}×{annotations.width}, images of "
                              f"{image_shape[0]}×{image_shape[1]}")
    if n_train is not None:
        annotations.training_masks(n_train)  # raises for an id past the split
    return annotations


def _meta(raw: np.ndarray, path: Path) -> dict:
    try:
        meta = json.loads(str(raw))
        meta = {"dataset": safe_name(meta["dataset"], "dataset"), "model": str(meta.get("model", ""))[:200],
                "height": int(meta["height"]), "width": int(meta["width"]), "format": int(meta["format"])}
    except (ValueError, KeyError, TypeError) as exc:
        raise AnnotationError(f"{path}: unreadable header ({exc})") from None
    if meta["format"] != FORMAT:
        raise AnnotationError(f"{path}: annotation format {meta['format']}, this gradviz reads {FORMAT}")
    if not (1 <= meta["height"] <= 4096 and 1 <= meta["width"] <= 4096):
        raise AnnotationError(f"{path}: masks of {meta['height']}×{meta['width']} are not images")
    return meta


def _check_arrays(arrays: dict, k: int, shape: tuple[int, int], path: Path) -> None:
    ids = arrays["image_ids"]
    if ids.ndim != 1 or ids.dtype.kind not in "iu" or (k and int(ids.min()) < 0) or len(np.unique(ids)) != k:
        raise AnnotationError(f"{path}: image_ids must be distinct non-negative integers")
    for name in ("not_here", "here"):
        if arrays[name].shape != (k, *shape) or arrays[name].dtype != bool:
            raise AnnotationError(f"{path}: {name} must be booleans of shape {(k, *shape)}")
    if arrays["created"].shape != (k,) or arrays["kinds"].shape != (k,) or arrays["kinds"].dtype.kind != "U":
        raise AnnotationError(f"{path}: created and kinds need one entry per image")
    unknown = set(arrays["kinds"].tolist()) - set(KINDS)
    if unknown:
        raise AnnotationError(f"{path}: unknown annotation kinds {sorted(unknown)}")


def annotation_path(dataset: str, model: str) -> Path:
    """Where the page keeps the annotations one person made for `dataset` while looking at `model`'s maps."""
    return path_inside(path_inside(home_dir() / "annotations", dataset, what="dataset"), model, ".npz", "model")


def from_generated_masks(dataset: str, masks: np.ndarray, image_ids: np.ndarray) -> Annotations:
    """Annotations of `image_ids` made from a dataset's own masks ([N, H, W] or [N, 1, H, W] aligned with its train
    split): how the interaction-efficiency runs annotate N images through the same path a person's strokes take."""
    masks = np.asarray(masks, dtype=bool).reshape(len(masks), *np.asarray(masks).shape[-2:])
    ids = np.asarray(image_ids, dtype=np.int64)
    _, last = np.unique(ids[::-1], return_index=True)  # an id given twice counts once, where it came last (as add)
    ids = ids[np.sort(len(ids) - 1 - last)]
    not_here = masks[ids]
    if not not_here.reshape(len(ids), -1).any(1).all():
        raise AnnotationError("mark at least one pixel where the model must not look")
    # Built whole, not by `add` per image: adding copies every array, which is quadratic in the set's size.
    return Annotations(dataset, masks.shape[1], masks.shape[2], model="", image_ids=ids, not_here=not_here,
                       here=np.zeros_like(not_here), created=np.full(len(ids), time.time()),
                       kinds=np.full(len(ids), "generated", dtype="<U9"))


STROKE_COLOURS = {"not_here": (255, 0, 0), "here": (0, 200, 0)}  # what the page paints each kind of region in


def mask_from_canvas(rgba: np.ndarray, shape: tuple[int, int], which: str = "not_here",
                     coverage: float = 0.25) -> np.ndarray:
    """The image pixels a drawing marks: `rgba` [h, w, 4] is a canvas of strokes over an image shown `h/H` times
    larger; an image pixel is marked where at least `coverage` of its block is painted in `which`'s colour (red
    "not here", green "here"; the nearer of the two decides a blended edge)."""
    rgba = np.asarray(rgba, dtype=np.float64)
    height, width = shape
    if rgba.ndim != 3 or rgba.shape[2] != 4 or rgba.shape[0] % height or rgba.shape[1] % width:
        raise AnnotationError(f"a drawing of {rgba.shape[:2]} does not cover {height}×{width} pixels evenly")
    red, green, alpha = rgba[..., 0], rgba[..., 1], rgba[..., 3] > 0
    painted = alpha & ((red > green) if which == "not_here" else (green > red))
    blocks = painted.reshape(height, rgba.shape[0] // height, width, rgba.shape[1] // width)
    return blocks.mean(axis=(1, 3)) >= coverage
