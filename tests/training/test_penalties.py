import pytest
import torch
from torch import nn

from gradviz.training.penalties import (
    exact_penalty,
    finite_difference_penalty,
    from_reference_lambda,
    input_gradient_penalty,
    to_reference_lambda,
    uniform_losses,
)


def test_exact_penalty_of_a_known_function():
    # ℓ(x) = ½‖Ax‖² has ∇ℓ = AᵀA x, so the penalty is the mean of ‖AᵀA x‖².
    torch.manual_seed(0)
    a = torch.randn(5, 4)
    x = torch.randn(3, 4, requires_grad=True)
    losses = 0.5 * (x @ a.T).pow(2).sum(1)
    expected = (x @ a.T @ a).pow(2).sum(1).mean()
    assert torch.allclose(exact_penalty(x, losses), expected, rtol=1e-5)


def test_exact_penalty_is_differentiable_in_the_parameters():
    w = torch.tensor(2.0, requires_grad=True)
    x = torch.tensor([[1.0], [3.0]], requires_grad=True)
    penalty = exact_penalty(x, (w * x).pow(2).sum(1))  # ∇ₓ = 2w²x, penalty = 4w⁴·mean(x²) = 20w⁴
    assert torch.isclose(penalty, torch.tensor(320.0))
    (dw,) = torch.autograd.grad(penalty, w)
    assert torch.isclose(dw, torch.tensor(640.0))  # d/dw 20w⁴ = 80w³


def _small_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 26 * 26, 10)).eval()


@pytest.mark.parametrize("penalised", ["ce", "uniform"])
def test_finite_difference_agrees_with_exact(penalised):
    model = _small_model()
    x = torch.rand(16, 1, 28, 28, requires_grad=True)
    y = torch.arange(16) % 10

    def loss_fn(z):
        logits = model(z)
        return uniform_losses(logits) if penalised == "uniform" else nn.functional.cross_entropy(
            logits, y, reduction="none")

    losses = loss_fn(x)
    exact = exact_penalty(x, losses)
    approx = finite_difference_penalty(x, losses, loss_fn, h=1e-3)
    # Stated tolerance: 2% relative at h = 1e-3 on a smooth network.
    assert torch.isclose(approx, exact, rtol=0.02), (float(approx), float(exact))
    # And their parameter gradients point the same way.
    g_exact = torch.autograd.grad(exact, model[0].weight)[0].flatten()
    g_fd = torch.autograd.grad(finite_difference_penalty(x, loss_fn(x), loss_fn, h=1e-3), model[0].weight)[0]
    assert nn.functional.cosine_similarity(g_exact, g_fd.flatten(), dim=0) > 0.99


def test_dispatch_and_units():
    x = torch.ones(1, 2, requires_grad=True)
    with pytest.raises(ValueError, match="unknown penalty"):
        input_gradient_penalty(x, x.sum(1), lambda z: z.sum(1), method="nope")
    assert from_reference_lambda(56234) == pytest.approx(109.83, rel=1e-3)
    assert to_reference_lambda(from_reference_lambda(1000.0)) == pytest.approx(1000.0)
