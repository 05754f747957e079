"""The tests that take a device: what runs on GPU in the app (attacks, saliency, training, evaluation, grids)
run on GRADVIZ_TEST_DEVICE and agree with the CPU. CI runs them on the CPU; scripts/gpu_check.sh on cuda.
On the CPU they still check that every path keeps its tensors where it was asked to."""
import os

import numpy as np
import pytest
import torch

from benchmarks.common import corner_masks
from gradviz.attacks.grids import target_grid
from gradviz.attacks.registry import REGISTRY
from gradviz.attribution.methods import explain
from gradviz.evaluation.runs.matrix import EvalConfig, evaluate
from gradviz.nets.store import load_model
from gradviz.training.defenses import DEFENSES, MASKED, REGULARIZED, LossSettings, batch_loss

DEVICE = os.environ.get("GRADVIZ_TEST_DEVICE", "cpu")
if DEVICE.startswith("cuda") and not torch.cuda.is_available():
    pytest.skip(f"GRADVIZ_TEST_DEVICE={DEVICE} but no CUDA device", allow_module_level=True)
FAST = {"itgsm": {"steps": 3}, "pgd": {"steps": 3}, "mifgsm": {"steps": 3}, "jsma": {"gamma": 0.02}}


@pytest.fixture(scope="module")
def models():
    return {where: load_model("mnist-normal", where)[0] for where in ("cpu", DEVICE)}


@pytest.fixture(scope="module")
def digits(mnist_test):
    return mnist_test[0][:64], mnist_test[1][:64]


@pytest.mark.slow
@pytest.mark.parametrize("attack", list(REGISTRY))
def test_each_attack_runs_on_the_device_and_agrees_with_the_cpu(attack, models, digits):
    entry = REGISTRY[attack]
    accuracy = {}
    for where, model in models.items():
        x, y = (t.to(where) for t in digits)
        labels = (y + 1) % 10 if entry.targeted else y
        adv = entry.generate(model, x, labels, 0.2 if entry.eps_bounded else None, **FAST.get(attack, {}))
        assert adv.device.type == torch.device(where).type and adv.min() >= 0 and adv.max() <= 1
        with torch.no_grad():
            accuracy[where] = float((model(adv).argmax(1) == y).float().mean())
    assert abs(accuracy["cpu"] - accuracy[DEVICE]) <= 3 / 64  # a few boundary digits may flip (TF32, atomics)


def test_saliency_on_the_device_matches_the_cpu(models, digits):
    x = digits[0][:1]
    maps = {where: explain({"m": model}, x.to(where), int(digits[1][0]), "gradient-logsum")["m"]["map"]
            for where, model in models.items()}
    scale = np.abs(maps["cpu"]).max()
    assert np.abs(maps["cpu"] - maps[DEVICE]).max() <= 1e-3 * scale


@pytest.mark.parametrize("defense", DEFENSES)
def test_a_training_step_of_each_defense_on_the_device(defense, digits):
    from gradviz.nets.architecture import PaperCNN

    torch.manual_seed(0)
    model = PaperCNN(width=16).to(DEVICE).train()
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = (t[:32].to(DEVICE) for t in digits)
    masks = corner_masks(x) if defense in MASKED else None
    loss, stats = batch_loss(model, x, y, LossSettings(defense, lam=1.0 if defense in REGULARIZED else 0.0),
                             mask=masks)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    assert np.isfinite(stats["loss"]) and all(p.device.type == torch.device(DEVICE).type for p in model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_evaluation_and_a_grid_on_the_device_agree_with_the_cpu(digits):
    rows = {where: evaluate(EvalConfig(models=["mnist-normal", "mnist-gradreg"], attacks=["fgsm"], eps=[0.0, 0.3],
                                       n=64, device=where), progress=False).rows.accuracy.to_numpy()
            for where in ("cpu", DEVICE)}
    assert np.abs(rows["cpu"] - rows[DEVICE]).max() <= 3 / 64
    grid = target_grid({"m": load_model("mnist-gradreg", DEVICE)[0]}, digits[0][:2].to(DEVICE), digits[1][:2],
                       params={"steps": 2})
    assert grid.images["m"].device.type == "cpu" and grid.images["m"].shape == (3, 2, 10, 28, 28)
