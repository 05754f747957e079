"""gradviz data add: an image folder or an .npz becomes a dataset every page and command can use, or a clear
message and nothing registered."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from gradviz.cli.main import main
from gradviz.data.adding import DatasetInputError, add_dataset
from gradviz.data.colour_digits import write_colour_folder
from gradviz.data.datasets import (
    channels,
    class_names,
    dataset_names,
    has_masks,
    input_shape,
    load_arrays,
    load_dataset,
    load_masks,
)
from gradviz.data.registered import RegisteredDatasetError, dataset_folder
from gradviz.paths import UnsafeNameError, user_dataset_dir


@pytest.fixture(scope="module")
def digits():
    arrays = load_arrays("mnist")
    return arrays.test_x[:400], arrays.test_y[:400]


@pytest.fixture
def folder(tmp_path, digits):
    return write_colour_folder(tmp_path / "colour", *digits, {"train": slice(0, 300), "test": slice(300, 400)})


def registered() -> list:
    root = user_dataset_dir()
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


def test_an_image_folder_becomes_a_colour_dataset_with_its_hash_checked(folder, digits):
    card = add_dataset("colour", folder)
    assert (card["channels"], card["height"], card["width"]) == (3, 32, 32)
    assert card["class_names"] == [f"digit-{k}" for k in range(10)]
    assert "colour" in dataset_names() and input_shape("colour") == (3, 32, 32) and channels("colour") == 3
    x, y = load_dataset("colour", "train")
    assert x.shape == (300, 3, 32, 32) and 0 <= x.min() and x.max() <= 1 and len(y) == 300
    # each image is the tinted digit it was written from: its label is the digit's
    assert sorted(np.bincount(y.numpy(), minlength=10)) == sorted(np.bincount(digits[1][:300], minlength=10))
    arrays = dataset_folder("colour") / "arrays.npz"
    arrays.write_bytes(arrays.read_bytes()[:-10] + b"0123456789")  # changed after registration
    with pytest.raises(RegisteredDatasetError, match="differs from"):
        load_dataset("colour", "test")


def test_an_npz_with_masks_and_class_names_in_nchw_floats(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((20, 3, 16, 16)).astype(np.float32)
    masks = np.zeros((20, 16, 16), bool)
    masks[:, :4, :4] = True
    np.savez(tmp_path / "d.npz", x_train=x[:15], y_train=np.arange(15) % 2, x_test=x[15:], y_test=np.arange(5) % 2,
             masks_train=masks[:15], masks_test=masks[15:], class_names=np.array(["cat", "dog"]))
    card = add_dataset("pets", tmp_path / "d.npz")
    assert card["has_masks"] and has_masks("pets") and class_names("pets") == ["cat", "dog"]
    loaded, _ = load_dataset("pets", "train")
    assert loaded.shape == (15, 3, 16, 16)
    assert np.abs(loaded.numpy() - x[:15]).max() <= 0.5 / 255 + 1e-6  # stored as 8-bit, rounded
    assert load_masks("pets", "test").shape == (5, 1, 16, 16)


def _write(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


BAD = {
    "one class": (lambda r: [_write(r / s / "a" / f"{k}.png", np.zeros((16, 16), np.uint8)) for s in ("train", "test")
                             for k in range(3)], "at least two distinct classes"),
    "empty split": (lambda r: [_write(r / "train" / c / "0.png", np.zeros((16, 16), np.uint8)) for c in "ab"]
                    + [(r / "test" / "a").mkdir(parents=True)], "empty split"),
    "mixed sizes": (lambda r: [_write(r / s / c / "0.png", np.zeros((16 if c == "a" else 20, 16), np.uint8))
                               for s in ("train", "test") for c in "ab"], "mixed sizes; pass --resize"),
    "corrupt image": (lambda r: [_write(r / s / c / "0.png", np.zeros((16, 16), np.uint8)) for s in ("train", "test")
                                 for c in "ab"] + [(r / "train" / "a" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\nnot")],
                      "1.png: "),
    "oversized image": (lambda r: [_write(r / s / c / "0.png", np.zeros((16, 2000) if c == "b" else (16, 16), np.uint8))
                                   for s in ("train", "test") for c in "ab"], "the limit is 1024 per side"),
    "test class without training folder": (lambda r: [_write(r / s / c / "0.png", np.zeros((16, 16), np.uint8))
                                                      for s, cs in (("train", "ab"), ("test", "abc")) for c in cs],
                                           "have no training folder"),
    "formula as class name": (lambda r: [_write(r / s / c / "0.png", np.zeros((16, 16), np.uint8))
                                         for s in ("train", "test") for c in ("a", "=HYPERLINK(1)")], "class name"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_folder_is_named_and_nothing_is_registered(tmp_path, case):
    make, message = BAD[case]
    make(tmp_path / "in")
    with pytest.raises(DatasetInputError, match=message):
        add_dataset("mine", tmp_path / "in")
    assert registered() == []  # not even a staging folder is left
    assert "mine" not in dataset_names()


def test_mixed_sizes_are_resized_when_asked(tmp_path):
    BAD["mixed sizes"][0](tmp_path / "in")
    card = add_dataset("mine", tmp_path / "in", resize="24x20")
    assert (card["height"], card["width"], card["channels"]) == (24, 20, 1)


def test_bad_npz_and_names_are_refused(tmp_path):
    np.savez(tmp_path / "partial.npz", x_train=np.zeros((4, 8, 8), np.uint8), y_train=np.arange(4) % 2)
    with pytest.raises(DatasetInputError, match="missing x_test, y_test"):
        add_dataset("mine", tmp_path / "partial.npz")
    np.savez(tmp_path / "pickled.npz", x_train=np.array([object()] * 4), y_train=np.arange(4) % 2,
             x_test=np.zeros((2, 8, 8), np.uint8), y_test=np.arange(2))
    with pytest.raises(DatasetInputError, match="pickled"):
        add_dataset("mine", tmp_path / "pickled.npz")
    np.savez(tmp_path / "ok.npz", x_train=np.zeros((4, 8, 8), np.uint8), y_train=np.arange(4) % 2,
             x_test=np.zeros((2, 8, 8), np.uint8), y_test=np.arange(2))
    for name in ("../escape", "a\n", "", "x" * 65):
        with pytest.raises(UnsafeNameError):
            add_dataset(name, tmp_path / "ok.npz")
    with pytest.raises(DatasetInputError, match="built-in"):
        add_dataset("mnist", tmp_path / "ok.npz")
    add_dataset("mine", tmp_path / "ok.npz")
    with pytest.raises(DatasetInputError, match="registered already"):
        add_dataset("mine", tmp_path / "ok.npz")
    assert registered() == ["mine"]


def test_the_cli_registers_and_lists_a_dataset(folder, capsys):
    assert main(["data", "add", "colour", str(folder)]) == 0
    assert "300 train + 100 test colour images of 32×32, 10 classes" in capsys.readouterr().out
    assert main(["data", "info", "colour"]) == 0
    assert "registered dataset colour" in capsys.readouterr().out
    assert main(["data", "add", "colour", str(folder)]) == 2
    assert "registered already" in capsys.readouterr().err


def test_an_image_folder_is_stored_shuffled_so_the_first_test_images_span_the_classes(folder):
    add_dataset("colour", folder)
    _, y = load_dataset("colour", "test")
    assert len(set(y[:30].tolist())) >= 8  # in folder order the first 30 would be one or two classes


@pytest.mark.parametrize("command", [["data", "add", "--help"], ["models", "add", "--help"]])
def test_the_add_commands_explain_themselves(command, capsys):
    with pytest.raises(SystemExit) as done:
        main(command)
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert ("train/<class>" in text and "--resize" in text) if command[0] == "data" else \
        ("--import package.module:Callable" in text and "never in the browser" in text and "--onnx" in text)
