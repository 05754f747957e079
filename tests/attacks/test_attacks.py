import pytest
import torch
from captum.robust import FGSM
from torch import nn

from gradviz.attacks.linf import choose_targets, fgsm, linf_steps, loss_gradient_sign, single_step_sweep, tgsm
from gradviz.attacks.registry import REGISTRY


def pgd(model, x, y, eps, steps=20, step_scale=0.125, random_start=True):
    return REGISTRY["pgd"].generate(model, x, y, eps, steps=steps, step_scale=step_scale, random_start=random_start)


def mifgsm(model, x, y, eps, steps=10, decay=1.0):
    return REGISTRY["mifgsm"].generate(model, x, y, eps, steps=steps, decay=decay)


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
    free = [a for _, a in linf_steps(linear, x, t, 0.1, 5, towards=True)][-1]
    boxed = REGISTRY["itgsm"].generate(linear, x, t, 0.15, steps=5, step_scale=0.1 / 0.15)
    assert (boxed - x).abs().max() <= 0.15 + 1e-6
    assert (free - x).abs().max() > 0.15
    with pytest.raises(ValueError, match="itgsm needs an ε between 0 and 1"):
        REGISTRY["itgsm"].generate(linear, x, t, None)


def test_an_attack_with_iterates_returns_its_last_iterate(linear, batch):
    x, y = batch
    path = list(REGISTRY["pgd"].path(linear, x, y, 0.1, steps=4))
    assert len(path) == 4 and torch.equal(path[-1][1], pgd(linear, x, y, 0.1, steps=4))
    assert REGISTRY["jsma"].multi_step and REGISTRY["jsma"].iterates is None  # many steps, no path to show


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
    plain = pgd(linear, x, y, 0.1, steps=10, step_scale=0.1, random_start=False)
    assert torch.equal(mifgsm(linear, x, y, 0.1, steps=10, decay=0.0), plain)


@pytest.mark.parametrize("attack", ["fgsm", "itgsm", "pgd"])
def test_the_registry_attacks_in_eval_mode_and_restores_each_modules_mode(attack):
    """As torchattacks' Attack.__call__ does: the attacker sees running statistics and no dropout, and a model
    handed over in training mode (a Sequential that is not ours, one layer deliberately left in eval) gets its
    own modes back."""
    from torch import nn

    from gradviz.attacks.registry import get_attack

    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.5),
                          nn.Linear(32, 10)).train()
    model[2].eval()
    seen = []
    model[4].register_forward_hook(lambda module, args, out: seen.append(module.training))
    x, y = torch.rand(4, 1, 28, 28), torch.randint(0, 10, (4,))
    entry = get_attack(attack)
    entry.generate(model, x, (y + 1) % 10 if entry.targeted else y, 0.1)
    list(entry.path(model, x, (y + 1) % 10 if entry.targeted else y, 0.1))
    assert seen and not any(seen)
    assert model.training and model[4].training and not model[2].training
