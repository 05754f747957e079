"""Target grids: every iteration of every model from one computation, consistent with the attacks library."""
import json

import numpy as np
import pytest
import torch

from gradviz.attacks.grids import cross_predictions, first_of_each_class, mosaic, provenance, target_grid
from gradviz.attacks.linf import last_iterate, linf_steps
from gradviz.data.images import from_png16, to_png16
from gradviz.nets.store import load_model


@pytest.fixture(scope="module")
def models():
    return {name: load_model(name)[0] for name in ("mnist-normal", "mnist-gradreg")}


@pytest.fixture(scope="module")
def rows(mnist_test):
    return first_of_each_class(*mnist_test)


@pytest.fixture(scope="module")
def grid(models, rows):
    return target_grid(models, *rows, attack="itgsm", params={"steps": 3})


def test_rows_are_the_first_digit_of_each_class(rows, mnist_test):
    x, y = rows
    assert y.tolist() == list(range(10))
    first_seven = int((mnist_test[1] == 7).nonzero()[0])
    assert torch.equal(x[7], mnist_test[0][first_seven])


def test_every_iteration_is_kept_and_matches_iterated_tgsm(grid, models, rows):
    x, _ = rows
    images = grid.images["mnist-normal"]
    assert images.shape == (4, 10, 10, 28, 28) and grid.iterations == 3
    assert torch.equal(images[0, 4, 9], x[4, 0])  # iteration 0 is the original
    target = torch.full((1,), 9)
    two = last_iterate(linf_steps(models["mnist-normal"], x[4:5], target, 0.1, 2, towards=True), x[4:5])
    assert torch.allclose(images[2, 4, 9], two[0, 0], atol=1e-6)
    assert torch.equal(grid.cells("mnist-normal", 99), images[3])  # past the end: the last iteration
    prob = grid.target_prob["mnist-normal"]
    assert prob[3].mean() > prob[0].mean()  # the attack moves towards its targets
    assert grid.predicted["mnist-normal"].shape == (4, 10, 10)


def test_projected_grid_stays_in_the_ball_and_jsma_grid_has_one_step(models, rows):
    x, _ = rows
    projected = target_grid({"n": models["mnist-normal"]}, *rows, eps=0.15, params={"steps": 4})
    assert (projected.images["n"] - x[None, :, None, 0]).abs().max() <= 0.15 + 1e-6
    few = (x[:2], torch.tensor([0, 1]))
    jsma_grid = target_grid({"n": models["mnist-normal"]}, *few, attack="jsma", params={"gamma": 0.05})
    assert jsma_grid.iterations == 1 and jsma_grid.settings == {"eps": None, "theta": 1.0, "gamma": 0.05, "seed": 0}
    with pytest.raises(ValueError, match="unknown attack"):
        target_grid(models, *rows, attack="cw")
    with pytest.raises(ValueError, match="gamma must be between"):
        target_grid(models, *rows, attack="jsma", params={"gamma": 2})


def test_cross_predictions_agree_with_each_models_own_view(grid, models):
    views = cross_predictions(grid, models, 2)
    pred, prob = views["mnist-gradreg"]["mnist-gradreg"]
    assert torch.equal(pred, grid.predicted["mnist-gradreg"][2])
    assert torch.allclose(prob, grid.target_prob["mnist-gradreg"][2], atol=1e-6)
    assert views["mnist-gradreg"]["mnist-normal"][0].shape == (10, 10)


def test_exported_grid_is_lossless_with_its_provenance(grid):
    image = mosaic(grid.cells("mnist-normal", 3))
    assert image.shape == (10 * 30 - 2, 10 * 30 - 2)
    back = from_png16(to_png16(image))[0, 0].numpy()
    assert np.abs(back - image).max() <= 0.5 / 65535 + 1e-7
    record = provenance(grid, "mnist-normal", 3, {"mnist-normal": {"sha256": "abc"}}, "mnist", "first of each class")
    assert json.loads(json.dumps(record))["iteration"] == 3 and record["model_sha256"] == "abc"
    assert len(record["target_probability"]) == 10


def test_cli_writes_a_grid_png_and_its_provenance(tmp_path, capsys):
    from gradviz.cli.main import main

    assert main(["grid", "--models", "mnist-gradreg", "--param", "itgsm.steps=4", "--iteration", "3",
                 "--out", str(tmp_path)]) == 0
    png, record = tmp_path / "mnist-gradreg-itgsm-it3.png", tmp_path / "mnist-gradreg-itgsm-it3.json"
    assert from_png16(png.read_bytes()).shape == (1, 1, 298, 298)
    assert json.loads(record.read_text())["iteration"] == 3
    assert "predicts the target in" in capsys.readouterr().out
    assert main(["grid", "--dataset", "fashion-mnist", "--models", "mnist-gradreg", "--out", str(tmp_path)]) == 2


def test_a_grid_reports_progress_across_its_models(models, rows):
    heard = []
    target_grid(models, *rows, params={"steps": 2}, progress=lambda done, total, name: heard.append((done, total, name)))
    assert heard == [(1, 4, "mnist-normal"), (2, 4, "mnist-normal"), (3, 4, "mnist-gradreg"), (4, 4, "mnist-gradreg")]
