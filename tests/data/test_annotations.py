"""Annotation sets: what a person marked, kept with its provenance, exported and imported as checked plain arrays,
and turned into the masks a masked defense trains with."""
import numpy as np
import pytest
import torch

from gradviz.data.annotations import (
    AnnotationError,
    Annotations,
    annotation_path,
    from_generated_masks,
    load_annotations,
    save_annotations,
)
from gradviz.data.datasets import load_masks
from gradviz.paths import UnsafeNameError
from gradviz.training.config import TrainConfig
from gradviz.training.loop import training_masks, training_split


def _corner(rows: slice = slice(0, 4), cols: slice = slice(0, 4)) -> np.ndarray:
    mask = np.zeros((28, 28), dtype=bool)
    mask[rows, cols] = True
    return mask


def test_an_image_annotated_again_is_replaced_and_undo_forgets_it():
    a = Annotations("mnist", 28, 28, model="mnist-normal")
    a.add(5, _corner())
    a.add(9, _corner(), here=_corner(slice(10, 20), slice(10, 20)), kind="box")
    a.add(5, _corner(slice(24, 28)), kind="lasso")
    assert a.image_ids.tolist() == [9, 5] and a.kinds.tolist() == ["box", "lasso"]
    assert a.not_here[1][24:, :4].all() and not a.not_here[1][:4, :4].any()
    assert a.remove(9) and not a.remove(9) and len(a) == 1
    masks = a.training_masks(10)
    assert masks.shape == (10, 1, 28, 28) and masks[5, 0, 24:, :4].all() and masks.sum() == 16
    with pytest.raises(AnnotationError, match="past the 4 training images"):
        a.training_masks(4)
    with pytest.raises(AnnotationError, match="at least one pixel"):
        a.add(1, np.zeros((28, 28)))
    with pytest.raises(AnnotationError, match=r"\(27, 28\)"):
        a.add(1, np.ones((27, 28)))


def test_a_saved_set_loads_back_equal_and_is_checked_against_its_dataset(tmp_path):
    a = Annotations("mnist", 28, 28, model="mnist-normal")
    a.add(3, _corner())
    a.add(7, _corner(slice(24, 28), slice(24, 28)), kind="box")
    path = save_annotations(a, tmp_path / "set.npz")
    b = load_annotations(path, "mnist", (28, 28), n_train=60000)
    assert b.model == "mnist-normal" and b.image_ids.tolist() == [3, 7]
    assert np.array_equal(a.not_here, b.not_here) and np.array_equal(a.created, b.created)
    with pytest.raises(AnnotationError, match="of 'mnist', not of 'fashion-mnist'"):
        load_annotations(path, "fashion-mnist")
    with pytest.raises(AnnotationError, match="56×28"):
        load_annotations(path, image_shape=(56, 28))
    with pytest.raises(AnnotationError, match="past the 5 training images"):
        load_annotations(path, n_train=5)


@pytest.mark.parametrize("damage,message", [
    (lambda z: z | {"image_ids": np.array([3, 3])}, "distinct"),
    (lambda z: z | {"not_here": z["not_here"].astype(np.uint8)}, "booleans"),
    (lambda z: z | {"kinds": np.array(["brush", "sql'; drop"])}, "unknown annotation kinds"),
    (lambda z: z | {"meta": np.array('{"format": 1, "dataset": "../../etc", "height": 28, "width": 28}')},
     "unreadable header"),
    (lambda z: {k: v for k, v in z.items() if k != "created"}, "missing created"),
])
def test_a_hostile_or_damaged_file_is_refused_with_what_is_wrong(tmp_path, damage, message):
    a = Annotations("mnist", 28, 28)
    a.add(3, _corner())
    a.add(4, _corner())
    with np.load(save_annotations(a, tmp_path / "ok.npz")) as z:
        arrays = damage({k: z[k] for k in z.files})
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(AnnotationError, match=message):
        load_annotations(tmp_path / "bad.npz")


def test_a_pickled_array_is_never_unpickled(tmp_path):
    np.savez(tmp_path / "pickle.npz", meta=np.array([{"evil": 1}], dtype=object))
    with pytest.raises(AnnotationError, match="not an annotation file"):
        load_annotations(tmp_path / "pickle.npz")
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(AnnotationError, match="not an annotation file"):
        load_annotations(tmp_path / "text.npz")


def test_the_page_store_path_stays_inside_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADVIZ_HOME", str(tmp_path))
    expected = tmp_path / "annotations" / "decoy-mnist" / "decoy-mnist-normal.npz"
    assert annotation_path("decoy-mnist", "decoy-mnist-normal") == expected
    with pytest.raises(UnsafeNameError):
        annotation_path("..", "x")
    with pytest.raises(UnsafeNameError):
        annotation_path("mnist", "../../x")


def test_generated_masks_become_annotations_and_training_masks_of_the_annotated_images_only(tmp_path):
    masks = load_masks("decoy-mnist", "train")
    a = from_generated_masks("decoy-mnist", masks[:, 0].numpy(), np.array([0, 2, 5]))
    path = save_annotations(a, tmp_path / "three.npz")
    config = TrainConfig(dataset="decoy-mnist", defense="counterexamples", annotations=str(path), train_subset=10,
                         device="cpu")
    config.validate()
    got = training_masks(config)
    assert got.shape == (10, 1, 28, 28) and len(training_split(config)[0][0]) == 10
    assert [i for i in range(10) if got[i].any()] == [0, 2, 5]
    assert torch.equal(got[2], masks[2])


def test_annotations_need_a_defense_that_uses_them_and_give_any_dataset_a_masked_defense(tmp_path):
    a = Annotations("mnist", 28, 28)
    a.add(0, _corner())
    path = str(save_annotations(a, tmp_path / "mnist.npz"))
    with pytest.raises(ValueError, match="--annotations go with a defense that uses them"):
        TrainConfig(dataset="mnist", defense="normal", annotations=path).validate()
    with pytest.raises(ValueError, match="needs annotations"):
        TrainConfig(dataset="mnist", defense="rrr", lam=1.0).validate()
    TrainConfig(dataset="mnist", defense="rrr", lam=1.0, annotations=path).validate()  # plain MNIST, annotated


def test_a_drawing_becomes_the_image_pixels_it_covers_by_colour():
    from gradviz.data.annotations import mask_from_canvas

    drawing = np.zeros((280, 280, 4), dtype=np.uint8)
    drawing[0:40, 0:40] = (255, 0, 0, 255)  # red over image pixels (0..3, 0..3)
    drawing[100:120, 100:102] = (255, 0, 0, 255)  # a 2-pixel-wide sliver: a fifth of image pixels (10..11, 10)
    drawing[200:230, 200:230] = (0, 200, 0, 128)  # green, half transparent: "here"
    not_here, here = mask_from_canvas(drawing, (28, 28)), mask_from_canvas(drawing, (28, 28), "here")
    assert not_here[:4, :4].all() and not_here.sum() == 16
    assert here[20:23, 20:23].all() and here.sum() == 9
    with pytest.raises(AnnotationError, match="evenly"):
        mask_from_canvas(drawing[:275], (28, 28))


def test_the_cli_makes_shows_and_compares(tmp_path, capsys):
    from gradviz.cli.main import main

    out = tmp_path / "ten.npz"
    assert main(["annotations", "from-masks", "--dataset", "decoy-mnist", "--n", "10", "--out", str(out)]) == 0
    assert main(["annotations", "show", str(out)]) == 0
    assert "10 annotated training images of decoy-mnist (28×28)" in capsys.readouterr().out
    assert main(["annotations", "compare", "--dataset", "decoy-mnist", "--models",
                 "decoy-mnist-normal,decoy-mnist-rrr", "--n", "200"]) == 0
    printed = capsys.readouterr().out
    assert "follows the swatch" in printed and "decoy-mnist-rrr" in printed
    assert main(["annotations", "from-masks", "--dataset", "mnist", "--n", "10", "--out", str(out)]) == 2
    assert "mnist has no masks" in capsys.readouterr().err
