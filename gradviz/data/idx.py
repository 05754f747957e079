"""Reader for the IDX format that MNIST and Fashion-MNIST ship in.

Validates every header field before touching the payload, so a truncated or wrong file
fails with a message naming the file instead of a reshape error deep inside numpy.
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

# IDX type codes (third byte of the magic number) -> big-endian numpy dtypes.
_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


class IdxFormatError(ValueError):
    """Raised for a file that is not a well-formed IDX file."""


def read_bytes(path: Path) -> bytes:
    """The file's contents, decompressed if it is gzipped."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            return fh.read()
    except (OSError, EOFError) as exc:  # gzip raises these for truncated or non-gzip files
        raise IdxFormatError(f"{path}: cannot read ({exc})") from exc


def read_idx(path: str | Path, expect_ndim: int | None = None) -> np.ndarray:
    """Read an IDX file (optionally gzipped) into a numpy array of its native dtype."""
    path = Path(path)
    raw = read_bytes(path)
    if len(raw) < 4:
        raise IdxFormatError(f"{path}: {len(raw)} bytes is too short for an IDX header")
    zero, type_code, ndim = int.from_bytes(raw[:2], "big"), raw[2], raw[3]
    if zero != 0 or type_code not in _DTYPES or ndim == 0:
        raise IdxFormatError(f"{path}: bad IDX magic number 0x{raw[:4].hex()}")
    if expect_ndim is not None and ndim != expect_ndim:
        raise IdxFormatError(f"{path}: expected {expect_ndim} dimensions, header says {ndim}")
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise IdxFormatError(f"{path}: header truncated ({len(raw)} of {header_len} bytes)")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = _DTYPES[type_code]
    expected = int(np.prod(shape)) * dtype.itemsize
    payload = len(raw) - header_len
    if payload != expected:
        raise IdxFormatError(
            f"{path}: header says shape {shape} ({expected} bytes) but the file holds {payload} bytes"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header_len).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write a uint8 array as IDX (gzipped if the name ends in .gz); used by tests and exports."""
    path = Path(path)
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as fh:
        fh.write(header + array.tobytes())


def read_images_labels(images: Path, labels: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a matching pair of image (N×28×28) and label (N) IDX files."""
    x = read_idx(images, expect_ndim=3)
    y = read_idx(labels, expect_ndim=1)
    if x.shape[0] != y.shape[0]:
        raise IdxFormatError(f"{images} holds {x.shape[0]} images but {labels} holds {y.shape[0]} labels")
    if x.shape[1:] != (28, 28):
        raise IdxFormatError(f"{images}: images are {x.shape[1:]}, expected 28×28")
    if y.size and int(y.max()) > 9:
        raise IdxFormatError(f"{labels}: label {int(y.max())} is outside 0..9")
    return x.astype(np.uint8), y.astype(np.int64)
