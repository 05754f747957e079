import pytest
import torch
from captum.robust import FGSM
from torch import nn

from gradviz.attacks.linf import (
    choose_targets,
    fgsm,
    iterative_tgsm,
    loss_gradient_sign,
    mifgsm,
    pgd,
    single_step_sweep,
    tgsm,
)


def logit_cross_entropy(logits, labels):
    return nn.functional.cross_entropy(logits, labels, reduction="none")


@pytest.fixture
def linear():
    """logits = Wx with a known W, so the CE gradient sign can be written down."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10)).eval()
    return model


@pytest.fixture
def batch():
    torch.manual_seed(1)
    return torch.rand(8, 1, 28, 28) * 0.6 + 0.2, torch.arange(8) % 10


def test_gradient_sign_matches_the_analytic_one(linear, batch):
    x, y = batch
    w = linear[1].weight
    p = torch.softmax(linear(x), 1)
    grad = (p - nn.functional.one_hot(y, 10).float()) @ w  # ∇ₓ CE for a linear model
    assert torch.equal(loss_gradient_sign(linear, x, y).flatten(1), grad.sign())


def test_fgsm_increases_and_tgsm_decreases_the_loss(linear, batch):
    x, y = batch
    ce = nn.functional.cross_entropy
    t = (y + 1) % 10
    assert ce(linear(fgsm(linear, x, y, 0.05)), y) > ce(linear(x), y)
    assert ce(linear(tgsm(linear, x, t, 0.05)), t) < ce(linear(x), t)


def test_eps_zero_returns_the_input_and_clipping_holds(linear, batch):
    x, y = batch
    assert torch.equal(fgsm(linear, x, y, 0.0), x)
    big = fgsm(linear, x, y, 5.0)
    assert big.min() >= 0 and big.max() <= 1 and set(big.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(pgd(linear, x, y, 0.0), x)


def test_sweep_equals_per_eps_fgsm_exactly(linear, batch):
    x, y = batch
    eps = [0.0, 0.1, 0.25, 0.7]
    sweep = single_step_sweep(linear, x, y, eps)
    for e in eps:
        assert torch.equal(sweep[e], fgsm(linear, x, y, e))
    targets = (y + 1) % 10
    for e, adv in single_step_sweep(linear, x, targets, eps, targeted=True).items():
        assert torch.equal(adv, tgsm(linear, x, targets, e))


def test_fgsm_agrees_with_captum(linear, batch):
    x, y = batch
    ours = fgsm(linear, x, y, 0.1)
    theirs = FGSM(linear, loss_func=logit_cross_entropy, lower_bound=0.0, upper_bound=1.0).perturb(x, epsilon=0.1, target=y)
    moved = theirs != x  # captum leaves pixels whose |gradient| < 1e-6 alone; we follow the plain sign
    assert moved.float().mean() > 0.9
    assert torch.allclose(ours[moved], theirs[moved], atol=1e-6)


def test_pgd_stays_in_the_ball_and_beats_fgsm(linear, batch):
    x, y = batch
    adv = pgd(linear, x, y, 0.1, steps=20)
    assert (adv - x).abs().max() <= 0.1 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    ce = nn.functional.cross_entropy
    assert ce(linear(adv), y) >= ce(linear(fgsm(linear, x, y, 0.1)), y) - 1e-4
    assert torch.equal(adv, pgd(linear, x, y, 0.1, steps=20))  # seeded random start


def test_iterative_tgsm_projection(linear, batch):
    x, y = batch
    t = (y + 1) % 10
    free = iterative_tgsm(linear, x, t, step=0.1, steps=5)
    boxed = iterative_tgsm(linear, x, t, eps=0.15, step=0.1, steps=5, project=True)
    assert (boxed - x).abs().max() <= 0.15 + 1e-6
    assert (free - x).abs().max() > 0.15
    with pytest.raises(ValueError):
        iterative_tgsm(linear, x, t, project=True)


def test_target_modes(linear, batch):
    x, y = batch
    assert torch.equal(choose_targets(linear, x, y, "next"), (y + 1) % 10)
    assert torch.equal(choose_targets(linear, x, y, 3), torch.full_like(y, 3))
    assert torch.equal(choose_targets(linear, x, y, "least-likely"), linear(x).argmin(1))
    r = choose_targets(linear, x, y, "random", seed=4)
    assert (r != y).all() and torch.equal(r, choose_targets(linear, x, y, "random", seed=4))
    with pytest.raises(ValueError):
        choose_targets(linear, x, y, "nope")


def test_mifgsm_stays_in_the_ball_beats_fgsm_and_without_momentum_is_iterated_fgsm(linear, batch):
    x, y = batch
    adv = mifgsm(linear, x, y, 0.1)
    assert (adv - x).abs().max() <= 0.1 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    ce = nn.functional.cross_entropy
    assert ce(linear(adv), y) >= ce(linear(fgsm(linear, x, y, 0.1)), y) - 1e-4
    plain = pgd(linear, x, y, 0.1, steps=10, step_size=0.01, random=False)
    assert torch.equal(mifgsm(linear, x, y, 0.1, steps=10, decay=0.0), plain)
