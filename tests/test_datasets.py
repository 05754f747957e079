import numpy as np
import pytest
import torch

from gradviz import load_dataset
from gradviz.datasets import DatasetNotFound, load_arrays, merge_and_split, validation_split
from gradviz.idx import write_idx


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_real_datasets_have_the_documented_form(name):
    for split in ("train", "test"):
        x, y = load_dataset(name, split)
        assert x.dtype == torch.float32 and x.shape[1:] == (1, 28, 28)
        assert y.dtype == torch.long and len(y) == len(x) >= 2000
        assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
        assert sorted(y.unique().tolist()) == list(range(10))


def test_fashion_mnist_is_complete():
    assert len(load_dataset("fashion-mnist", "train")[0]) == 60000
    assert len(load_dataset("fashion-mnist", "test")[0]) == 10000


def test_mnist_splits_are_disjoint():
    a = load_arrays("mnist")
    train = {row.tobytes() for row in a.train_x}
    assert not any(row.tobytes() in train for row in a.test_x)
    assert a.source


def test_merge_drops_duplicates_and_is_seeded():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (50, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, 50)
    parts = [(x, y), (x[:20], y[:20])]
    first = merge_and_split(parts, test_size=10, seed=3)
    again = merge_and_split(parts, test_size=10, seed=3)
    assert len(first[0]) + len(first[2]) == 50
    assert all(np.array_equal(a, b) for a, b in zip(first, again))


def test_idx_folder_is_found_through_data_dir(tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for stem, n in (("train", 30), ("t10k", 10)):
        write_idx(folder / f"{stem}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(folder / f"{stem}-labels-idx1-ubyte.gz", rng.integers(0, 10, n, dtype=np.uint8))
    x, _ = load_dataset("mnist", "test", data_dir=str(tmp_path))
    assert x.shape == (10, 1, 28, 28)
    assert load_arrays("mnist", str(tmp_path)).source.startswith("idx:")


def test_bad_names():
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("cifar", "train")
    with pytest.raises(ValueError, match="split"):
        load_dataset("mnist", "validation")


def test_missing_fashion_gives_instructions(tmp_path, monkeypatch):
    monkeypatch.setattr("gradviz.datasets.FASHION_SYSTEM_DIR", tmp_path / "nowhere")
    monkeypatch.setenv("GRADVIZ_CACHE", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    load_arrays.cache_clear()
    try:
        with pytest.raises(DatasetNotFound, match="apt-get install dataset-fashion-mnist"):
            load_arrays("fashion-mnist")
    finally:
        load_arrays.cache_clear()


def test_validation_split_is_disjoint():
    x = torch.arange(100).float().view(100, 1, 1, 1)
    (fx, _), (vx, _) = validation_split(x, torch.zeros(100), 20, seed=0)
    assert len(vx) == 20 and len(fx) == 80
    assert not set(fx.flatten().tolist()) & set(vx.flatten().tolist())
