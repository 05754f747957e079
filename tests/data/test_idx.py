import gzip

import numpy as np
import pytest

from gradviz.data.idx import IdxFormatError, read_idx, read_images_labels, write_idx


@pytest.fixture
def images():
    return np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_round_trip(tmp_path, images, suffix):
    path = tmp_path / f"img{suffix}"
    write_idx(path, images)
    assert np.array_equal(read_idx(path), images)


def test_pair_reads_images_and_labels(tmp_path, images):
    write_idx(tmp_path / "x", images)
    write_idx(tmp_path / "y", np.arange(5, dtype=np.uint8))
    x, y = read_images_labels(tmp_path / "x", tmp_path / "y")
    assert x.shape == (5, 28, 28) and y.dtype == np.int64 and list(y) == [0, 1, 2, 3, 4]


def test_truncated_file_names_the_file(tmp_path, images):
    path = tmp_path / "short-images"
    write_idx(path, images)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(IdxFormatError, match="short-images.*holds"):
        read_idx(path)


def test_bad_magic(tmp_path):
    path = tmp_path / "bad"
    path.write_bytes(b"\x12\x34\x08\x01" + b"\x00" * 8)
    with pytest.raises(IdxFormatError, match="magic"):
        read_idx(path)


def test_short_header(tmp_path):
    path = tmp_path / "tiny"
    path.write_bytes(b"\x00\x00\x08\x03\x00\x00")
    with pytest.raises(IdxFormatError, match="header truncated"):
        read_idx(path)


def test_not_gzip(tmp_path):
    path = tmp_path / "fake.gz"
    path.write_bytes(b"not gzip at all")
    with pytest.raises(IdxFormatError, match="fake.gz"):
        read_idx(path)


def test_truncated_gzip(tmp_path, images):
    path = tmp_path / "cut.gz"
    write_idx(path, images)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(IdxFormatError, match="cut.gz"):
        read_idx(path)


def test_wrong_dimensions(tmp_path):
    write_idx(tmp_path / "flat", np.zeros((3, 784), dtype=np.uint8))
    with pytest.raises(IdxFormatError, match="expected 3 dimensions"):
        read_idx(tmp_path / "flat", expect_ndim=3)


def test_count_mismatch_and_bad_labels(tmp_path, images):
    write_idx(tmp_path / "x", images)
    write_idx(tmp_path / "y", np.arange(4, dtype=np.uint8))
    with pytest.raises(IdxFormatError, match="5 images but"):
        read_images_labels(tmp_path / "x", tmp_path / "y")
    write_idx(tmp_path / "y", np.array([0, 1, 2, 3, 12], dtype=np.uint8))
    with pytest.raises(IdxFormatError, match="label 12"):
        read_images_labels(tmp_path / "x", tmp_path / "y")


def test_wrong_image_size(tmp_path):
    write_idx(tmp_path / "x", np.zeros((2, 32, 32), dtype=np.uint8))
    write_idx(tmp_path / "y", np.zeros(2, dtype=np.uint8))
    with pytest.raises(IdxFormatError, match="28×28"):
        read_images_labels(tmp_path / "x", tmp_path / "y")


def test_gzip_payload_checked(tmp_path):
    path = tmp_path / "lying.gz"
    with gzip.open(path, "wb") as fh:
        fh.write(bytes([0, 0, 8, 1]) + (10).to_bytes(4, "big") + b"\x00" * 3)
    with pytest.raises(IdxFormatError, match=r"\(10,\)"):
        read_idx(path)
