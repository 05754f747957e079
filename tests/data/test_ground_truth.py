"""Decoy MNIST and Block MNIST: generated bit for bit the same every time, masks where the papers put them, and
the RRR defense that uses them."""
import numpy as np
import pytest
import torch

from gradviz.data.datasets import evidence_regions, load_arrays, load_dataset, load_masks, load_sample_masks
from gradviz.data.ground_truth import BASE, GENERATORS, SWATCH, null_block, swatch_class
from gradviz.nets.architecture import PaperCNN, build_model, describe
from gradviz.training.config import TrainConfig
from gradviz.training.loop import train_model
from gradviz.training.penalties import exact_penalty, finite_difference_penalty, log_probability_sums

# sha256 of each generated split (images, labels, masks): a change to a generator or to numpy's streams shows here
PINNED = {
    "decoy-mnist-train": "66deecb136913081959f186d1911501db04c51a1576899b56cb81c6f5730598b",
    "decoy-mnist-test": "2df66049d7d5fa910e33a59b7b00929a42d2a5dafdeded9b55e647085d0f858d",
    "block-mnist-train": "e11858d15f401657a003b56806abc452c9d8ee9e0cdc1d24ba4fa7ad0a77ec30",
    "block-mnist-test": "c0460ccc1381f53a2a6b22030b448330e3d097248131ea1d82fbb62d07c9be42",
    "decoy-fashion-mnist-train": "7023ef608e6739de091645fd65d2081ee07bee8fa6fcf30bb4bd1f73875aae64",
    "decoy-fashion-mnist-test": "504ea745d64f2985ad80ada53893e65df6e8f2df5b3378a8d4c9c055a5f6a8af",
}


@pytest.mark.parametrize("name", ["decoy-mnist", "block-mnist", "decoy-fashion-mnist"])
def test_generated_splits_are_deterministic_and_their_sha256_is_pinned(name):
    arrays = load_arrays(name)
    for split in ("train", "test"):
        assert arrays.sha256[f"{name}-{split}"] == PINNED[f"{name}-{split}"]
    base = load_arrays(BASE[name])
    again = GENERATORS[name](base.test_x, base.test_y, "test")
    assert np.array_equal(again[0], arrays.test_x) and np.array_equal(again[2], arrays.test_mask)
    assert arrays.sha256["t10k-images-idx3-ubyte"] == base.sha256["t10k-images-idx3-ubyte"]  # from official files


@pytest.mark.parametrize("name", ["decoy-mnist", "decoy-fashion-mnist"])
def test_decoy_swatch_is_a_4x4_corner_coding_the_label_in_training_and_a_random_class_at_test(name):
    mnist, arrays = load_arrays(BASE[name]), load_arrays(name)
    for x, mask, base in ((arrays.train_x, arrays.train_mask, mnist.train_x),
                          (arrays.test_x, arrays.test_mask, mnist.test_x)):
        assert mask.sum((1, 2)).tolist() == [SWATCH * SWATCH] * len(x)
        assert np.array_equal(x[~mask], base[~mask])  # the digit is untouched outside the swatch
        corners = {(int(r.min()), int(c.min())) for r, c in (np.nonzero(m) for m in mask[:400])}
        assert corners == {(0, 0), (0, 24), (24, 0), (24, 24)}
    greys = arrays.train_x[arrays.train_mask].reshape(-1, 16)
    assert (greys == (255 - 25 * arrays.train_y)[:, None]).all()
    coded = np.array([swatch_class(x / 255, m) for x, m in zip(arrays.test_x[:2000], arrays.test_mask[:2000])])
    agree = (coded == arrays.test_y[:2000]).mean()
    assert 0.06 < agree < 0.14 and len(set(coded.tolist())) == 10  # a random class: right one time in ten


def test_block_mnist_stacks_a_0_or_1_digit_and_the_null_block_in_random_order():
    mnist, arrays = load_arrays("mnist"), load_arrays("block-mnist")
    keep = np.isin(mnist.test_y, (0, 1))
    assert arrays.test_x.shape == (int(keep.sum()), 56, 28) and set(arrays.test_y.tolist()) == {0, 1}
    assert np.array_equal(arrays.test_y, mnist.test_y[keep])
    top = arrays.test_mask[:, 0, 0]
    assert 0.4 < top.mean() < 0.6 and (arrays.test_mask.sum((1, 2)) == 28 * 28).all()
    signal = np.where(top[:, None, None], arrays.test_x[:, :28], arrays.test_x[:, 28:])
    null = np.where(top[:, None, None], arrays.test_x[:, 28:], arrays.test_x[:, :28])
    assert np.array_equal(signal, mnist.test_x[keep]) and (null == null_block()).all()


def test_masks_align_with_images_and_evidence_regions_say_where_the_right_evidence_is():
    x, _ = load_dataset("decoy-mnist", "test")
    masks = load_masks("decoy-mnist", "test")
    assert masks.shape == x.shape and masks.dtype == torch.bool
    assert torch.equal(evidence_regions("decoy-mnist", "test"), ~masks[:, 0])  # everything but the swatch
    assert torch.equal(evidence_regions("block-mnist", "test"), load_masks("block-mnist", "test")[:, 0])
    assert load_masks("mnist", "test") is None and evidence_regions("mnist", "test") is None
    assert torch.equal(load_sample_masks("block-mnist"), load_masks("block-mnist", "test")[:100])


def test_models_take_the_dataset_shape_and_class_count_and_cards_rebuild_them():
    model = PaperCNN(width=8, num_classes=2, image_shape=(56, 28)).eval()
    assert model(torch.rand(3, 1, 56, 28)).shape == (3, 2)
    card = describe(model)
    assert card["image_shape"] == [56, 28] and card["num_classes"] == 2
    assert build_model(card).load_state_dict(model.state_dict())  # same tensors
    assert build_model({"name": "PaperCNN", "width": 8}).eval()(torch.rand(1, 1, 28, 28)).shape == (1, 10)  # old cards
    with pytest.raises(ValueError, match="too small"):
        PaperCNN(width=8, image_shape=(2, 28))


def test_the_masked_penalty_counts_only_the_gradient_inside_the_mask():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 5))
    x = torch.rand(6, 1, 4, 4, requires_grad=True)
    mask = torch.zeros(6, 1, 4, 4)
    mask[:, :, :2] = 1
    losses = log_probability_sums(net(x))
    (grad,) = torch.autograd.grad(losses.sum(), x, retain_graph=True)
    assert torch.allclose(exact_penalty(x, losses, mask), (grad * mask).pow(2).flatten(1).sum(1).mean())
    approx = finite_difference_penalty(x, losses, lambda z: log_probability_sums(net(z)), h=1e-3, mask=mask)
    assert torch.allclose(approx, exact_penalty(x, losses, mask), rtol=1e-2)  # a linear net: exact up to rounding


def _swatch_share(model, x, masks):
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(log_probability_sums(model(x)).sum(), x)
    return float((grad.abs() * masks).sum() / grad.abs().sum())


@pytest.mark.slow
def test_rrr_on_a_few_hundred_images_lowers_gradient_mass_inside_the_mask():
    x, y = load_dataset("decoy-mnist", "train")
    masks = load_masks("decoy-mnist", "train")
    data = (x[:384], y[:384], masks[:384])
    shares = {}
    for defense, lam in (("normal", 0.0), ("rrr", 1.0)):
        config = TrainConfig(dataset="decoy-mnist", defense=defense, lam=lam, steps=60, batch_size=64, width=16,
                             device="cpu")
        model, card = train_model(config, data, progress=False)
        shares[defense] = _swatch_share(model.eval(), x[384:640], masks[384:640])
    assert shares["rrr"] < 0.5 * shares["normal"], shares


def test_rrr_needs_masks_and_refuses_what_would_misplace_them():
    with pytest.raises(ValueError, match="needs annotations .* or a dataset with masks"):
        TrainConfig(dataset="mnist", defense="rrr", lam=1.0).validate()
    with pytest.raises(ValueError, match="augment"):
        TrainConfig(dataset="decoy-mnist", defense="rrr", lam=1.0, augment=True).validate()
    x, y = load_dataset("decoy-mnist", "test")
    with pytest.raises(ValueError, match="needs annotation masks"):
        train_model(TrainConfig(dataset="decoy-mnist", defense="rrr", lam=1.0, steps=1, width=8, device="cpu"),
                    (x[:64], y[:64]), progress=False)


@pytest.mark.slow
def test_interpret_scores_localisation_against_the_masks_and_the_report_renders_the_verdict(user_models):
    from gradviz.evaluation.report.ground_truth_claims import ground_truth_section
    from gradviz.evaluation.runs.interpretation import InterpretConfig, interpret
    from gradviz.nets.store import save_model

    x, y = load_dataset("decoy-mnist", "train")
    data = (x[:256], y[:256], load_masks("decoy-mnist", "train")[:256])
    for name, defense, lam in (("gt-normal", "normal", 0.0), ("gt-rrr", "rrr", 1.0), ("gt-gradreg", "gradreg", 1.0)):
        config = TrainConfig(dataset="decoy-mnist", defense=defense, lam=lam, steps=20, batch_size=64, width=8,
                             device="cpu", name=name)
        model, card = train_model(config, data, progress=False)
        save_model(model, card, user_models)
    result = interpret(InterpretConfig(dataset="decoy-mnist", models=["gt-normal", "gt-rrr", "gt-gradreg"],
                                       methods=["gradient-logp"], metrics=["relevance-mass", "pointing-game"], n=40,
                                       device="cpu"), progress=False)
    prov = result.provenance
    assert prov["localisation_target"] == "ground truth: everything but the swatch"
    assert set(prov["follows_swatch"]) == {"gt-normal", "gt-rrr", "gt-gradreg"}
    mass = result.summary.set_index("model").query("metric == 'relevance-mass'")["mean"]
    assert mass["gt-rrr"] > mass["gt-normal"]  # told to look away from the swatch, it does
    text = "\n".join(ground_truth_section(result))
    assert "### decoy-mnist" in text and "| gt-rrr | gt-normal | relevance-mass |" in text
    assert "Reads the swatch" in text
