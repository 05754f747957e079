"""The gradreg step's cheaper layers (explicit input gradients of convolutions, the one-channel input gradient,
plain-op batch norm, layout-keeping pooling and flattening, the reference layers pooling before batch norm):
losses, gradients and running statistics are PyTorch's own to float64 rounding, for both penalties, both layer
styles and both memory layouts, and only the context switches them on."""
import copy

import pytest
import torch
import torch.nn.functional as F

from gradviz.nets.architecture import PaperCNN, channels_last
from gradviz.nets.double_backward import _OneChannelInputGradient, explicit_input_gradients
from gradviz.training.defenses import LossSettings, batch_loss
from gradviz.training.penalties import cross_entropy_losses, exact_penalty, finite_difference_penalty


def _builtin_step(model, x, y, lam, penalty):
    """The gradreg loss written out with PyTorch's own layers and derivatives (no context)."""
    x = x.detach().requires_grad_(True)
    logits = model(x)
    losses = cross_entropy_losses(logits, y)
    if penalty == "exact":
        term = exact_penalty(x, losses)
    else:
        term = finite_difference_penalty(x, losses, lambda z: cross_entropy_losses(model(z), y))
    total = F.cross_entropy(logits, y) + lam * term
    model.zero_grad()
    total.backward()
    return total.item(), {k: p.grad.clone() for k, p in model.named_parameters()}


def _double_model(layers: str, layout: str) -> PaperCNN:
    model = PaperCNN(width=16, layers=layers, dropout=0.0).double().train()
    return channels_last(model) if layout == "channels-last" else model


@pytest.mark.parametrize("penalty", ["exact", "finite-difference"])
@pytest.mark.parametrize("layout", ["default", "channels-last"])
@pytest.mark.parametrize("layers", ["zoo", "reference"])
def test_the_gradreg_step_matches_pytorchs_own_derivatives(layers, layout, penalty):
    torch.manual_seed(0)
    x, y = torch.rand(16, 1, 28, 28, dtype=torch.float64), torch.randint(0, 10, (16,))
    ours = _double_model(layers, layout)
    theirs = copy.deepcopy(ours)
    total, _ = batch_loss(ours, x, y, LossSettings("gradreg", lam=3.0, penalty=penalty))
    assert any("Explicit" in n for n in _node_names(total))
    ours.zero_grad()
    total.backward()
    expected_total, expected = _builtin_step(theirs, x, y, 3.0, penalty)
    assert total.item() == pytest.approx(expected_total, rel=1e-9)
    scale = max(float(g.abs().max()) for g in expected.values())  # a conv bias before batch norm has gradient 0
    for name, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, expected[name], rtol=1e-7, atol=1e-9 * scale, msg=name)
    for (name, mine), theirs_ in zip(ours.named_buffers(), theirs.buffers()):  # batch norm's running statistics
        torch.testing.assert_close(mine, theirs_, rtol=1e-10, atol=1e-12, msg=name)
    ours.eval(), theirs.eval()
    with torch.no_grad(), explicit_input_gradients():
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-10, atol=1e-10)


def _node_names(tensor: torch.Tensor) -> set[str]:
    seen, todo = {}, [tensor.grad_fn]
    while todo:
        node = todo.pop()
        if node is not None and id(node) not in seen:
            seen[id(node)] = node.name()
            todo += [n for n, _ in node.next_functions]
    return set(seen.values())


def test_only_the_context_switches_the_convolutions():
    model, x = PaperCNN(width=8), torch.rand(4, 1, 28, 28)
    assert not any("Explicit" in n for n in _node_names(model(x)))
    with explicit_input_gradients():
        assert any("Explicit" in n for n in _node_names(model(x)))
    assert not any("Explicit" in n for n in _node_names(model(x)))


def test_the_window_makes_input_gradients_and_the_loss_after_it_weight_gradients():
    torch.manual_seed(1)
    model = PaperCNN(width=8).double().eval()
    x, y = torch.rand(4, 1, 28, 28, dtype=torch.float64), torch.randint(0, 10, (4,))
    expected_x = torch.autograd.grad(F.cross_entropy(model(x.requires_grad_()), y), x)[0]
    F.cross_entropy(model(x), y).backward()
    expected = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    x = x.detach().requires_grad_()
    with explicit_input_gradients(second_order=False):
        loss = F.cross_entropy(model(x), y)
        (inside,) = torch.autograd.grad(loss, x, retain_graph=True)
        loss.backward(retain_graph=True)  # inside the window: the convolutions make input gradients only
    torch.testing.assert_close(inside, expected_x)
    convolutions = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(m.weight.grad is None and m.bias.grad is None for m in convolutions)
    assert x.grad is not None
    model.zero_grad(), x.grad.zero_()
    loss.backward()  # after it: the usual weight gradients, and none for the model's input
    assert float(x.grad.abs().max()) == 0.0
    for p, e in zip(model.parameters(), expected):
        torch.testing.assert_close(p.grad, e, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("shape, kernel, padding", [((3, 6, 10, 12), 3, 0), ((2, 5, 9, 9), 5, 2), ((2, 4, 8, 7), 5, 1)])
def test_the_one_channel_input_gradient_is_the_transposed_convolution(layout, shape, kernel, padding):
    torch.manual_seed(2)
    grad = torch.randn(*shape, dtype=torch.float64).contiguous(memory_format=layout).requires_grad_()
    weight = torch.randn(shape[1], 1, kernel, kernel, dtype=torch.float64, requires_grad=True)
    size = (shape[0], 1, shape[2] + kernel - 1 - 2 * padding, shape[3] + kernel - 1 - 2 * padding)

    def ours(g, w):
        return _OneChannelInputGradient.apply(g, w, size, (padding, padding))

    torch.testing.assert_close(ours(grad, weight), F.conv_transpose2d(grad, weight, padding=padding))
    assert torch.autograd.gradcheck(ours, (grad, weight))
