"""The exact penalty's cheaper derivatives (explicit input gradients of convolutions, the reference layers pooling
before batch norm): losses, gradients and running statistics are PyTorch's own to float rounding, in both layer
styles, and only the exact penalty switches them on."""
import copy

import pytest
import torch
import torch.nn.functional as F

from gradviz.nets.architecture import PaperCNN
from gradviz.nets.double_backward import explicit_input_gradients
from gradviz.training.defenses import LossSettings, batch_loss
from gradviz.training.penalties import exact_penalty


def _builtin_step(model, x, y, lam):
    """The exact gradreg loss written out with PyTorch's own convolution derivatives (no context)."""
    x = x.detach().requires_grad_(True)
    logits = model(x)
    total = F.cross_entropy(logits, y) + lam * exact_penalty(x, F.cross_entropy(logits, y, reduction="none"))
    model.zero_grad()
    total.backward()
    return total.item(), {k: p.grad.clone() for k, p in model.named_parameters()}


@pytest.mark.parametrize("layers", ["zoo", "reference"])
def test_the_exact_step_matches_pytorchs_own_derivatives(layers):
    torch.manual_seed(0)
    x, y = torch.rand(16, 1, 28, 28), torch.randint(0, 10, (16,))
    ours = PaperCNN(width=16, layers=layers, dropout=0.0).train()
    theirs = copy.deepcopy(ours)
    total, stats = batch_loss(ours, x, y, LossSettings("gradreg", lam=3.0, penalty="exact"))
    assert any("Explicit" in n for n in _node_names(total))
    ours.zero_grad()
    total.backward()
    expected_total, expected = _builtin_step(theirs, x, y, 3.0)
    assert total.item() == pytest.approx(expected_total, rel=1e-5)
    for name, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, expected[name], rtol=1e-4, atol=1e-5 * float(expected[name].abs().max()))
    for (name, mine), theirs_ in zip(ours.named_buffers(), theirs.buffers()):  # batch norm's running statistics
        torch.testing.assert_close(mine, theirs_, rtol=1e-5, atol=1e-7, msg=name)
    ours.eval(), theirs.eval()
    with torch.no_grad(), explicit_input_gradients():
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-4, atol=1e-5)


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


def test_first_order_gradients_inside_the_context_are_the_usual_ones():
    torch.manual_seed(1)
    model, x, y = PaperCNN(width=8).eval(), torch.rand(4, 1, 28, 28), torch.randint(0, 10, (4,))
    F.cross_entropy(model(x), y).backward()
    expected = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    with explicit_input_gradients():
        F.cross_entropy(model(x), y).backward()
    for p, e in zip(model.parameters(), expected):
        torch.testing.assert_close(p.grad, e, rtol=1e-4, atol=1e-6)
