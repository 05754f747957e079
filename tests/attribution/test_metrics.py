"""The metric registry checked against Quantus (pinned in requirements.txt): where Quantus has a metric, ours gives
the same numbers on the same model, images and maps. Where the definitions differ, the test says how."""
import numpy as np
import pytest
import quantus
import torch
from quantus.functions.perturb_func import noisy_linear_imputation
from quantus.functions.similarity_func import correlation_spearman
from skimage.metrics import structural_similarity
from torch import nn

from gradviz.attribution.imputation import linear_imputation
from gradviz.attribution.methods import get_method
from gradviz.attribution.metrics import (
    REGISTRY,
    Evidence,
    get_metric,
    ink_mask,
    largest_change,
    other_classes,
    perturbation_curve,
    pixel_order,
    randomisation_similarities,
    road_accuracy,
    unit_max,
)
from gradviz.attribution.randomisation import layer_groups, randomised_models
from gradviz.attribution.similarity import average_ranks, spearman, ssim
from gradviz.nets.store import load_model

N = 24


@pytest.fixture(scope="module")
def setup(mnist_test):
    model = load_model("mnist-normal")[0].eval()
    for p in model.parameters():
        p.requires_grad_(False)
    x, y = mnist_test[0][:N].clone(), mnist_test[1][:N].clone()
    maps = get_method("gradient-logp").attribute(model, x, y)
    return model, x, y, maps


def explain_logp(model, x, y, cls):
    return get_method("gradient-logp").attribute(model, x, y, cls)


def per_image_max(a: np.ndarray, **kwargs) -> np.ndarray:
    """Our normalisation, for Quantus: its default (normalise_by_max) divides a whole batch by the batch's
    largest |value|, so an image's score depends on which images share its batch, and its Sparseness adds 1e-7
    to every |value|, which swamps the ~1e-8 gradients of a confidently classified digit."""
    scale = np.abs(a).reshape(len(a), -1).max(1).reshape(-1, *[1] * (a.ndim - 1))
    return np.where(scale > 0, a / np.where(scale > 0, scale, 1), a)


def quantus_explain(model, inputs, targets, **kwargs):
    """Quantus's explain_func signature over ours: numpy in, numpy out."""
    x = torch.as_tensor(np.asarray(inputs), dtype=torch.float32)
    y = torch.as_tensor(np.asarray(targets)).long()
    return explain_logp(model, x, y, y).unsqueeze(1).numpy()


def evidence(setup, **kw) -> Evidence:
    model, x, y, maps = setup
    return Evidence(model, x, y, maps, explain_logp, ink_mask(x), **kw)


def as_quantus(setup):
    model, x, y, maps = setup
    return dict(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=maps.unsqueeze(1).numpy(),
                device="cpu")


def test_complexity_metrics_equal_quantus(setup):
    e = evidence(setup)
    ours = get_metric("sparseness")(e)
    theirs = quantus.Sparseness(normalise_func=per_image_max, disable_warnings=True)(**as_quantus(setup))
    assert np.allclose(ours, theirs, atol=1e-5)
    ours = get_metric("entropy")(e)
    theirs = quantus.Complexity(normalise_func=per_image_max, disable_warnings=True)(**as_quantus(setup))
    assert np.allclose(ours, theirs, atol=1e-6)


def test_localisation_metrics_equal_quantus(setup):
    e = evidence(setup)
    s_batch = e.mask.unsqueeze(1).numpy().astype(np.float32)
    for name, cls in (("relevance-mass", quantus.RelevanceMassAccuracy),
                      ("relevance-rank", quantus.RelevanceRankAccuracy),
                      ("pointing-game", quantus.PointingGame)):
        ours = get_metric(name)(e)
        theirs = cls(abs=True, normalise_func=per_image_max, disable_warnings=True)(**as_quantus(setup), s_batch=s_batch)
        assert np.allclose(ours, theirs, atol=1e-6), name  # ours always take |attribution|


def test_deletion_curve_equals_quantus_pixel_flipping(setup):
    model, x, y, maps = setup
    fractions, curve = perturbation_curve(model, x, y, pixel_order(maps), steps=16)
    theirs = quantus.PixelFlipping(features_in_step=49, abs=True, perturb_baseline="black", disable_warnings=True)(
        **as_quantus(setup), softmax=True)
    # Quantus's curve starts after the first step; ours also holds the unperturbed image at fraction 0.
    assert np.allclose(curve[:, 1:].numpy(), np.array(theirs), atol=1e-5)
    assert fractions[0] == 0 and fractions[-1] == 1 and len(fractions) == 17
    assert (curve[:, -1] < curve[:, 0]).float().mean() > 0.9  # a black image is not the true digit


def test_insertion_is_deletion_of_the_least_relevant_first_reversed(setup):
    model, x, y, maps = setup
    _, insertion = perturbation_curve(model, x, y, pixel_order(maps), 16, insert=True)
    _, lerf = perturbation_curve(model, x, y, pixel_order(maps, most_relevant_first=False), 16)
    assert torch.allclose(insertion, lerf.flip(1), atol=1e-6)


def test_linear_imputation_equals_quantus_road_imputation(mnist_test):
    x = mnist_test[0][:6]
    removed = torch.rand(x.shape, generator=torch.Generator().manual_seed(1)) < 0.7
    ours = linear_imputation(x, removed, noise=0.0)
    theirs = np.stack([noisy_linear_imputation(xi.numpy(), np.flatnonzero(r.numpy().ravel()), noise=0.0)
                       for xi, r in zip(x, removed)])
    assert np.abs(ours.numpy() - theirs).max() < 1e-5
    assert torch.equal(ours[~removed], x[~removed])  # known pixels are never touched
    noisy = linear_imputation(x, removed, 0.1, torch.Generator().manual_seed(0))
    assert torch.equal(noisy[~removed], x[~removed]) and not torch.allclose(noisy[removed], ours[removed])


def test_road_equals_quantus_without_noise(setup):
    model, x, y, maps = setup
    percentages = (10, 30, 50, 70, 90)
    ours = road_accuracy(model, x, y, pixel_order(maps), percentages, 0.0, torch.Generator())
    theirs = quantus.ROAD(percentages=list(percentages), noise=0.0, abs=True, disable_warnings=True)(
        **as_quantus(setup))
    # Quantus returns the accuracy per percentage over the batch; ours keeps each image's outcome.
    assert list(theirs) == list(percentages)
    assert np.allclose(ours.mean(0).numpy(), [theirs[p] for p in percentages], atol=1 / N + 1e-9)  # solvers
    # differ by ~1e-7, so one digit on a decision boundary may flip


class Draws:
    """Quantus's perturb_func that adds our draws, in order, so both see the same noisy images."""

    def __init__(self, noisy):
        self.deltas = [d.flatten(1).numpy() for d, _ in noisy]

    def __call__(self, arr, indices, **kwargs):
        return arr + self.deltas.pop(0)


def test_robustness_metrics_equal_quantus_on_the_same_draws(setup):
    e = evidence(setup, seed=3)
    noisy = e.noisy_maps(4, 0.1)
    ours = get_metric("max-sensitivity")(e, samples=4, radius=0.1)
    theirs = quantus.MaxSensitivity(nr_samples=4, normalise=True, normalise_func=per_image_max, perturb_func=Draws(noisy),
                                    disable_warnings=True)(**as_quantus(setup), explain_func=quantus_explain)
    assert np.allclose(ours, theirs, rtol=1e-4)
    ours = get_metric("local-lipschitz")(e, samples=4, radius=0.1)
    theirs = quantus.LocalLipschitzEstimate(nr_samples=4, normalise_func=per_image_max, perturb_func=Draws(noisy),
                                            disable_warnings=True)(**as_quantus(setup), explain_func=quantus_explain)
    assert np.allclose(ours, theirs, rtol=1e-4)
    assert len(e._noisy) == 1  # both metrics used the one set of noisy maps


def test_largest_change_is_zero_for_a_map_that_does_not_move(setup):
    _, x, _, maps = setup
    delta = torch.full_like(x, 0.1)
    assert np.allclose(largest_change(maps, [(delta, maps * 3.0)], per_unit_input=True), 0.0, atol=1e-6)  # scale is ignored


class TinyNet(nn.Sequential):
    """No normalisation layers: here our layers and Quantus's modules are the same list."""

    def __init__(self):
        super().__init__(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 28 * 28, 16),
                         nn.ReLU(), nn.Linear(16, 10))


@pytest.mark.parametrize("order,quantus_order", [("cascading", "top_down"), ("independent", "independent")])
def test_parameter_randomisation_equals_quantus_mprt(mnist_test, order, quantus_order):
    torch.manual_seed(0)
    model = TinyNet().eval()
    x, y = mnist_test[0][:N], mnist_test[1][:N]
    maps = explain_logp(model, x, y, y)
    e = Evidence(model, x, y, maps, explain_logp, ink_mask(x), seed=7)
    layers, similarities = randomisation_similarities(e, order, use_ssim=False)
    assert layers == ["5", "3", "0"]
    theirs = quantus.MPRT(similarity_func=correlation_spearman, layer_order=quantus_order, seed=7,
                          return_average_correlation=True, disable_warnings=True)(
        model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=maps.unsqueeze(1).numpy(),
        explain_func=quantus_explain, device="cpu")
    # Quantus's average also counts the unrandomised model's own maps (similarity 1) as one more layer.
    assert np.allclose((similarities.sum(0) + 1) / (len(layers) + 1), theirs, atol=1e-5)


def test_both_randomisation_orders_make_their_common_step_once_with_the_same_scores(mnist_test):
    torch.manual_seed(0)
    model = TinyNet().eval()
    x, y = mnist_test[0][:N], mnist_test[1][:N]
    calls = []

    def counting(m, xs, ys, cls):
        calls.append(m)
        return explain_logp(m, xs, ys, cls)

    def evidence():
        return Evidence(model, x, y, explain_logp(model, x, y, y), counting, ink_mask(x), seed=7)

    shared = evidence()
    both = [randomisation_similarities(shared, order, use_ssim=False)[1] for order in ("cascading", "independent")]
    assert len(calls) == 2 * 3 - 1  # three layers each, the top layer alone once
    alone = [randomisation_similarities(evidence(), order, use_ssim=False)[1] for order in ("cascading", "independent")]
    assert all(np.array_equal(a, b) for a, b in zip(both, alone))
    assert np.array_equal(both[0][0], both[1][0]) and not np.array_equal(both[0][1], both[1][1])


def test_layers_join_a_batch_norm_to_the_layer_before_and_leave_the_model_alone(setup):
    model = setup[0]
    groups = layer_groups(model)
    assert [name for name, _ in groups] == ["classifier.5", "classifier.1", "features.4", "features.0"]
    assert groups[1][1] == ["classifier.1", "classifier.2"]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    steps = list(randomised_models(model, "cascading", 0))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    last = dict(steps[-1][1].named_parameters())
    assert not torch.equal(last["features.0.weight"], before["features.0.weight"])
    with pytest.raises(ValueError, match="cascading or independent"):
        next(randomised_models(model, "bottom-up"))


def test_similarities_against_scipy_and_skimage(setup):
    maps = setup[3]
    other = maps.roll(1, 0)
    assert np.allclose(spearman(maps, other), correlation_spearman(maps.flatten(1).numpy(),
                                                                   other.flatten(1).numpy(), batched=True))
    expected = [structural_similarity(a, b, data_range=float(max(a.max(), b.max()) - min(a.min(), b.min())))
                for a, b in zip(maps.double().numpy(), other.double().numpy())]
    assert np.allclose(ssim(maps, other), expected)
    assert np.allclose(spearman(maps, maps * 2), 1.0) and np.allclose(ssim(maps, maps), 1.0)


def test_average_ranks_match_scipy_with_ties_and_without():
    from scipy.stats import rankdata

    rng = np.random.default_rng(3)
    tied = rng.integers(0, 4, (6, 50)).astype(np.float64)  # many ties, as in maps that are mostly zero
    tied[2] = 0.0  # a constant row: every pixel shares the middle rank
    for rows in (tied, rng.normal(size=(6, 50))):
        assert np.array_equal(average_ranks(rows), rankdata(rows, axis=1))


def test_random_logit_of_a_class_free_map_is_one(setup):
    model, x, y, _ = setup
    logsum = get_method("gradient-logsum")
    maps = logsum.attribute(model, x, y)
    e = Evidence(model, x, y, maps, lambda m, xs, ys, c: logsum.attribute(m, xs, ys, c), ink_mask(x))
    assert np.allclose(get_metric("random-logit")(e), 1.0)  # Σₖ log pₖ explains no class: it cannot pass
    assert np.all(get_metric("random-logit")(evidence(setup)) < 0.9)
    other = other_classes(y, 10, torch.Generator().manual_seed(0))
    assert not (other == y).any() and other.min() >= 0 and other.max() <= 9


def test_every_metric_scores_every_image_and_is_seeded(setup):
    for name, metric in REGISTRY.items():
        a = metric(evidence(setup, seed=1), **({"samples": 2} if "samples" in metric.settings() else {}))
        b = metric(evidence(setup, seed=1), **({"samples": 2} if "samples" in metric.settings() else {}))
        assert a.shape == (N,) and np.isfinite(a).all(), name
        assert np.array_equal(a, b), name


def test_all_zero_maps_are_undefined_not_zero(setup):
    model, x, y, maps = setup
    e = Evidence(model, x, y, torch.zeros_like(maps), explain_logp, ink_mask(x))
    for name in ("sparseness", "entropy", "relevance-mass", "alignment"):
        assert np.isnan(get_metric(name)(e)).all(), name
    assert unit_max(torch.zeros(2, 3, 3)).abs().sum() == 0


def test_metric_settings_are_checked():
    with pytest.raises(ValueError, match="unknown metric 'faithful'"):
        get_metric("faithful")
    with pytest.raises(ValueError, match="samples must be between 1 and 200"):
        get_metric("max-sensitivity").settings({"samples": 0})
    with pytest.raises(ValueError, match="has no setting radius"):
        get_metric("deletion").settings({"radius": 0.1})


def test_every_metric_names_the_paper_it_comes_from():
    import re

    from gradviz.attribution.metrics import REGISTRY, Metric

    for metric in REGISTRY.values():
        assert re.search(r"(19|20)\d\d", metric.reference) and "arXiv:" in metric.reference, metric.name
    with pytest.raises(ValueError, match="name the paper"):
        Metric("x", "X", "complexity", True, lambda e: e)
