"""Turn whatever image a user drops into a 28×28 grey digit the models understand, or a clear error.

Follows MNIST's own preprocessing: white ink on black, the ink's bounding box fitted into 20×20 keeping
its aspect ratio, then centred by its centre of mass in a 28×28 frame. Each step is kept for a preview.
"""
from __future__ import annotations

import io
import re
import warnings

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 40_000_000  # refuse decompression bombs before decoding them
MAX_BYTES = 10 * 1024 * 1024
# The only decoders an upload may reach; anything else (EPS, which Pillow hands to Ghostscript, PSD, ICO, …)
# is refused by its header before any decoder runs.
ALLOWED_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP")


class ImageError(ValueError):
    """The upload cannot be used; the message is meant for the user."""


def _too_large(size: str) -> ImageError:
    return ImageError(f"The image is too large: {size}; the limit is {MAX_PIXELS:,} pixels. Crop or shrink it first.")


def open_image(data: bytes) -> Image.Image:
    """Decode bytes through the allow-listed formats within the size limits, or ImageError saying why."""
    if not data:
        raise ImageError("The file is empty.")
    if len(data) > MAX_BYTES:
        raise ImageError(f"The file is {len(data) / 1e6:.1f} MB; the limit is {MAX_BYTES / 1e6:.0f} MB.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            probe = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
            if probe.width * probe.height > MAX_PIXELS:
                raise _too_large(f"{probe.width}×{probe.height} pixels")
            probe.verify()
            image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
            image.seek(0)  # animated GIF/PNG/WebP: the first frame
            image.load()
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:  # Pillow's own, larger limit
        size = re.search(r"\((\d+) pixels\)", str(exc))
        raise _too_large(f"{int(size.group(1)):,} pixels" if size else "over Pillow's pixel limit") from exc
    except UnidentifiedImageError as exc:
        raise ImageError(f"This is not an image gradviz reads: upload {', '.join(ALLOWED_FORMATS)} "
                         f"({type(exc).__name__}).") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"The image file is damaged or truncated ({exc}).") from exc
    return image


def to_grey(image: Image.Image) -> np.ndarray:
    """Any PIL mode -> float grey in [0, 1]; transparency is composited onto white paper."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(image, dtype=np.float64)
        span = arr.max() - arr.min()
        return (arr - arr.min()) / span if span > 0 else np.zeros_like(arr)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(paper, rgba)
    return np.asarray(image.convert("L"), dtype=np.float64) / 255.0


def _centre_digit(grey: np.ndarray) -> np.ndarray:
    """MNIST-style: crop to the ink, fit into 20×20, centre the centre of mass in 28×28."""
    ys, xs = np.nonzero(grey > 0.1)
    if len(ys) == 0:
        raise ImageError("The image is blank: no digit found.")
    crop = grey[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    h, w = crop.shape
    scale = 20.0 / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = np.asarray(Image.fromarray((crop * 255).astype(np.uint8)).resize(size, Image.LANCZOS),
                       dtype=np.float64) / 255.0
    frame = np.zeros((28, 28))
    total = small.sum()
    cy = (np.arange(small.shape[0]) @ small.sum(1)) / total if total else small.shape[0] / 2
    cx = (np.arange(small.shape[1]) @ small.sum(0)) / total if total else small.shape[1] / 2
    top = int(np.clip(round(14 - cy), 0, 28 - small.shape[0]))
    left = int(np.clip(round(14 - cx), 0, 28 - small.shape[1]))
    frame[top:top + small.shape[0], left:left + small.shape[1]] = small
    return frame.clip(0, 1)


def prepare_digit(data: bytes) -> tuple[torch.Tensor, list[tuple[str, np.ndarray]]]:
    """Bytes of an uploaded image -> tensor [1, 1, 28, 28] in [0, 1], plus the preprocessing steps."""
    image = open_image(data)
    image = ImageOps.exif_transpose(image) if image.mode not in ("I;16", "I;16B", "I;16L", "I", "F") else image
    image.thumbnail((1024, 1024))  # bound the work on huge photos
    grey = to_grey(image)
    steps = [("grey", grey)]
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    if border.mean() > 0.5:  # dark ink on light paper: invert to MNIST's white on black
        grey = 1.0 - grey
        steps.append(("inverted", grey))
    digit = _centre_digit(grey)
    steps.append(("28×28, centred", digit))
    return torch.from_numpy(digit).float().view(1, 1, 28, 28), steps


def to_png16(x: torch.Tensor | np.ndarray) -> bytes:
    """A [1, 1, H, W] or [H, W] image in [0, 1] as a 16-bit grey PNG: lossless to 1/65535."""
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    arr = np.rint(arr.reshape(arr.shape[-2:]).clip(0, 1) * 65535).astype(np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(arr).save(buffer, "PNG")
    return buffer.getvalue()


def to_png(x: torch.Tensor | np.ndarray) -> bytes:
    """An image in [0, 1] as a PNG: grey ([H, W] or [1, 1, H, W]) as 16-bit (to_png16, lossless to 1/65535),
    colour ([H, W, 3], or [1, 3, H, W] / [3, H, W] channels first) as 8-bit RGB, what PNG readers take for colour."""
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    arr = arr[0] if arr.ndim == 4 else arr
    if arr.ndim == 2 or arr.shape[0] == 1:
        return to_png16(arr)
    if arr.shape[0] == 3:
        arr = arr.transpose(1, 2, 0)
    buffer = io.BytesIO()
    Image.fromarray(np.rint(arr.clip(0, 1) * 255).astype(np.uint8), "RGB").save(buffer, "PNG")
    return buffer.getvalue()


def from_png16(data: bytes) -> torch.Tensor:
    """Inverse of to_png16."""
    arr = np.asarray(Image.open(io.BytesIO(data)), dtype=np.float64) / 65535.0
    return torch.from_numpy(arr).float().view(1, 1, *arr.shape)
