"""The attacks checked against a reference library, torchattacks 3.5.1, on a zoo model and real test digits.

FGSM, PGD without a random start and MI-FGSM are the same algorithms there, so the images must agree to float
precision. JSMA legitimately differs (below), so only its success rate is compared, within a stated margin.
"""
import pytest
import torch

from gradviz.attacks.registry import get_attack
from gradviz.nets.store import load_model

pytestmark = [pytest.mark.slow]

torchattacks = pytest.importorskip("torchattacks")


@pytest.fixture(scope="module")
def model():
    return load_model("mnist-normal")[0]


@pytest.fixture(scope="module")
def digits(mnist_test):
    x, y = mnist_test
    return x[:64], y[:64]


def same_images(ours: torch.Tensor, theirs: torch.Tensor, share: float = 1.0) -> bool:
    """At least `share` of the pixels agree to 1e-6 (1.0: all of them)."""
    close = (ours - theirs).abs() <= 1e-6
    return float(close.float().mean()) >= share


def test_fgsm_matches_torchattacks_exactly(model, digits):
    x, y = digits
    ours = get_attack("fgsm").generate(model, x, y, 0.3)
    theirs = torchattacks.FGSM(model, eps=0.3)(x, y)
    assert same_images(ours, theirs)


def test_pgd_without_random_start_matches_torchattacks_exactly(model, digits):
    x, y = digits
    # ε·step_scale = 0.25 · 0.125 = 0.03125 exactly, so both take bit-identical steps.
    ours = get_attack("pgd").generate(model, x, y, 0.25, steps=10, step_scale=0.125, random_start=False)
    theirs = torchattacks.PGD(model, eps=0.25, alpha=0.03125, steps=10, random_start=False)(x, y)
    assert same_images(ours, theirs)
    assert not same_images(ours, get_attack("pgd").generate(model, x, y, 0.25, steps=10, step_scale=0.125))


def test_mifgsm_matches_torchattacks(model, digits):
    """torchattacks divides each gradient by its mean |·|, Dong et al. (and we) by its sum: the same direction
    scaled by 784, so the momentum's signs could differ only where rounding meets a near-zero sum. Measured: all
    pixels agree; the test allows 0.1% to differ and one prediction in 64, so a rounding change in torch
    does not fail it."""
    x, y = digits
    ours = get_attack("mifgsm").generate(model, x, y, 0.2, steps=10, decay=1.0)
    theirs = torchattacks.MIFGSM(model, eps=0.2, alpha=0.02, steps=10, decay=1.0)(x, y)
    assert same_images(ours, theirs, share=0.999)
    with torch.no_grad():
        agree = (model(ours).argmax(1) == model(theirs).argmax(1)).sum()
    assert agree >= len(x) - 1


JSMA_MARGIN = 0.15  # success rates on 24 digits; the algorithms differ as stated below


def test_jsma_success_rate_is_close_to_torchattacks(model, digits):
    """Both raise pairs of pixels by θ = 1 towards (y+1) mod 10, scoring a pair by (α_p+α_q)·|β_p+β_q| with
    α_p+α_q > 0 and β_p+β_q < 0, with at most γ = 25% of the pixels changed. They differ legitimately in the
    search domain and the budget: we never pick a pixel already at 1 or changed before and stop when the next
    pair would pass ⌊784·γ⌋ pixels; torchattacks leaves out pixels ≥ 0.99, keeps changed ones in the search
    with their derivatives lowered by 2·max|∇|, and caps iterations at ⌈784·γ/2⌉. So the images differ; the
    share of digits pushed to the target must agree within JSMA_MARGIN and the pixels changed within 1.5×.
    Measured on these 24 digits: both 100% success, 41.9 pixels changed on average (ours) vs 35.5."""
    x, y = digits[0][:24], digits[1][:24]
    target = (y + 1) % 10
    ours = get_attack("jsma").generate(model, x, target)
    theirs = torchattacks.JSMA(model, theta=1.0, gamma=0.25)(x, y)  # untargeted mode aims at (y+1) mod 10
    with torch.no_grad():
        ours_rate = float((model(ours).argmax(1) == target).float().mean())
        theirs_rate = float((model(theirs).argmax(1) == target).float().mean())
    assert abs(ours_rate - theirs_rate) <= JSMA_MARGIN, (ours_rate, theirs_rate)
    assert ours_rate >= 0.8  # a normal MNIST model falls to JSMA nearly always (Papernot et al.: 97%)
    ours_pixels, theirs_pixels = ((a != x).flatten(1).sum(1).float().mean() for a in (ours, theirs))
    assert 1 / 1.5 <= float(ours_pixels / theirs_pixels) <= 1.5, (ours_pixels, theirs_pixels)
