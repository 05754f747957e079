import numpy as np
import pytest
import torch

from gradviz import load_dataset
from gradviz.data.datasets import DatasetIntegrityError, DatasetNotFound, load_arrays, validation_split
from gradviz.data.idx import write_idx


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


def test_mnist_is_the_official_set_with_verified_hashes():
    a = load_arrays("mnist")
    assert (len(a.train_x), len(a.test_x)) == (60000, 10000)
    assert np.bincount(a.test_y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert a.sha256["t10k-images-idx3-ubyte"].startswith("0fa7898d") and "sha256 verified" in a.source


def _write_idx_folder(folder, seed=0):
    folder.mkdir()
    rng = np.random.default_rng(seed)
    for stem, n in (("train", 30), ("t10k", 10)):
        write_idx(folder / f"{stem}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(folder / f"{stem}-labels-idx1-ubyte.gz", rng.integers(0, 10, n, dtype=np.uint8))


def test_a_copy_that_differs_from_the_official_files_is_refused_naming_the_file(tmp_path):
    _write_idx_folder(tmp_path / "mnist")
    with pytest.raises(DatasetIntegrityError, match=r"train-images-idx3-ubyte\.gz: contents differ"):
        load_arrays("mnist", str(tmp_path))


def test_idx_folder_is_found_through_data_dir(tmp_path):
    _write_idx_folder(tmp_path / "mnist")
    a = load_arrays("mnist", str(tmp_path), verify=False)
    assert a.test_x.shape == (10, 28, 28) and a.source.startswith("unverified IDX files")


def test_bad_names():
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("cifar", "train")
    with pytest.raises(ValueError, match="split"):
        load_dataset("mnist", "validation")


def test_missing_fashion_gives_instructions(tmp_path, monkeypatch):
    monkeypatch.setattr("gradviz.data.datasets.FASHION_SYSTEM_DIR", tmp_path / "nowhere")
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


def test_data_sample_writes_what_the_committed_samples_hold(tmp_path, capsys):
    """`gradviz data sample` is how assets/samples/ was made: the same digits, labels and source."""
    import numpy as np

    from gradviz.cli.main import main
    from gradviz.paths import SAMPLES_DIR

    assert main(["data", "sample", "--n", "100", "--out", str(tmp_path)]) == 0
    for path in sorted(SAMPLES_DIR.glob("*.npz")):
        assert path.name in capsys.readouterr().out or (tmp_path / path.name).is_file()
        written, committed = np.load(tmp_path / path.name), np.load(path)
        assert sorted(written.files) == sorted(committed.files), path.name
        for key in written.files:
            np.testing.assert_array_equal(written[key], committed[key], err_msg=f"{path.name}: {key}")


def test_two_runs_started_in_one_second_get_two_results_folders(tmp_path, monkeypatch):
    import datetime as dt

    import gradviz.paths

    class OneSecond(dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return cls(2026, 12, 7, 2, 30, 0)

    monkeypatch.setattr(gradviz.paths, "datetime", OneSecond)
    monkeypatch.setenv("GRADVIZ_HOME", str(tmp_path))
    monkeypatch.delenv("GRADVIZ_USER_MODELS", raising=False)
    first, second = gradviz.paths.new_results_folder("mnist"), gradviz.paths.new_results_folder("mnist")
    assert (first.name, second.name) == ("mnist-20261207-023000", "mnist-20261207-023000-2")
    assert first.parent == tmp_path / "results"
    (first.parent / "mnist-20261207-023000-3").mkdir(parents=True)  # one already written is not handed out either
    assert gradviz.paths.new_results_folder("mnist").name == "mnist-20261207-023000-4"
