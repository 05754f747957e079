"""The penalty's opt-in CPU fast path (gradviz.training.fast_penalty): the model's layers stay plain torch.nn; the
fast forward gives PyTorch's own losses, gradients and running statistics to float64 rounding (both penalties,
both layer styles, both memory layouts, and a Sequential of our own with stride, padding and ceil_mode); every
custom autograd Function passes gradcheck; a backward inside the window outside the penalty's pass raises; and
a model with a layer it does not know, or off the CPU, is refused with a reason."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gradviz.nets.architecture import PaperCNN, ReferenceFeatures, ShiftOnlyBatchNorm, channels_last
from gradviz.training import fast_penalty as fp
from gradviz.training.defenses import LossSettings, batch_loss


def _node_names(tensor: torch.Tensor) -> set[str]:
    seen, todo = {}, [tensor.grad_fn]
    while todo:
        node = todo.pop()
        if node is not None and id(node) not in seen:
            seen[id(node)] = node.name()
            todo += [n for n, _ in node.next_functions]
    return set(seen.values())


def _step(model, x, y, settings, fast):
    total, _ = batch_loss(model, x, y, settings, fast=fast)
    model.zero_grad()
    total.backward()
    return total, {k: p.grad.clone() for k, p in model.named_parameters()}


def _assert_same_step(ours, theirs, x, y, settings):
    fast = fp.fast_penalty_for(ours)
    assert fast is not None, fp.fast_penalty_refusal(ours)
    total, grads = _step(ours, x, y, settings, fast)
    assert any("Explicit" in n for n in _node_names(total))  # the fast path really ran
    expected_total, expected = _step(theirs, x, y, settings, None)
    assert not any("Explicit" in n for n in _node_names(expected_total))
    assert total.item() == pytest.approx(expected_total.item(), rel=1e-9)
    scale = max(float(g.abs().max()) for g in expected.values())  # a conv bias before batch norm has gradient 0
    for name, grad in grads.items():
        torch.testing.assert_close(grad, expected[name], rtol=1e-7, atol=1e-9 * scale, msg=name)
    for (name, mine), other in zip(ours.named_buffers(), theirs.buffers()):  # batch norm's running statistics
        torch.testing.assert_close(mine, other, rtol=1e-10, atol=1e-12, msg=name)


@pytest.mark.parametrize("penalty", ["exact", "finite-difference"])
@pytest.mark.parametrize("layout", ["default", "channels-last"])
@pytest.mark.parametrize("layers", ["zoo", "reference"])
def test_the_fast_step_matches_pytorchs_own_derivatives(layers, layout, penalty):
    torch.manual_seed(0)
    x, y = torch.rand(16, 1, 28, 28, dtype=torch.float64), torch.randint(0, 10, (16,))
    ours = PaperCNN(width=16, layers=layers, dropout=0.0).double().train()
    ours = channels_last(ours) if layout == "channels-last" else ours
    _assert_same_step(ours, copy.deepcopy(ours), x, y, LossSettings("gradreg", lam=3.0, penalty=penalty))


def _strided_cnn() -> nn.Sequential:
    """A network that is not ours, of layers the fast path knows, with the settings PaperCNN never uses: stride 2,
    dilation 2, asymmetric padding, overlapping and padded ceil_mode pooling, three input channels."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=(1, 2)), nn.BatchNorm2d(8), nn.ReLU(),
        nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),
        nn.Conv2d(8, 8, 3, padding=2, dilation=2, bias=False), nn.ReLU(),
        nn.Flatten(), nn.Linear(8 * 5 * 6, 10))


@pytest.mark.parametrize("penalty", ["exact", "finite-difference"])
@pytest.mark.parametrize("defense", ["gradreg", "gradreg+advtrain"])
def test_a_sequential_with_stride_dilation_padding_and_ceil_mode_matches_too(penalty, defense):
    torch.manual_seed(3)
    x, y = torch.rand(6, 3, 15, 19, dtype=torch.float64), torch.randint(0, 10, (6,))
    model = _strided_cnn().double().train()
    _assert_same_step(model, copy.deepcopy(model), x, y, LossSettings(defense, lam=2.0, eps=0.1, penalty=penalty))


def test_the_architecture_is_plain_torch_nn_with_no_state_in_forward():
    for layers in ("zoo", "reference"):
        model = PaperCNN(width=8, layers=layers)
        for module in model.modules():
            if type(module) in (ShiftOnlyBatchNorm, ReferenceFeatures, PaperCNN):
                continue
            assert type(module).__module__.startswith("torch.nn"), type(module)
        assert ShiftOnlyBatchNorm.forward is nn.BatchNorm1d.forward
        assert ReferenceFeatures.forward is nn.Sequential.forward
        assert not any("Explicit" in n for n in _node_names(model(torch.rand(2, 1, 28, 28))))


def test_a_backward_inside_the_window_outside_the_penalty_pass_raises():
    model, x = PaperCNN(width=8).double(), torch.rand(2, 1, 28, 28, dtype=torch.float64)
    fast = fp.fast_penalty_for(model)
    with fast.window(second_order=False, own_input=None) as window:
        loss = window.forward(x).sum()
        with pytest.raises(fp.FastPathMisuse, match="outside `penalty_pass"):
            loss.backward()


def test_after_the_window_only_the_steps_own_input_goes_without_a_gradient():
    torch.manual_seed(1)
    model = PaperCNN(width=8).double().eval()
    x, y = torch.rand(4, 1, 28, 28, dtype=torch.float64), torch.randint(0, 10, (4,))
    expected_x = torch.autograd.grad(F.cross_entropy(model(x.requires_grad_()), y), x)[0]
    fast = fp.fast_penalty_for(model)
    own, other = x.detach().requires_grad_(), x.detach().requires_grad_()
    with fast.window(second_order=False, own_input=own) as window:
        loss_own, loss_other = F.cross_entropy(window.forward(own), y), F.cross_entropy(window.forward(other), y)
        with window.penalty_pass():
            (inside,) = torch.autograd.grad(loss_own, own, retain_graph=True)
    torch.testing.assert_close(inside, expected_x)
    (loss_own + loss_other).backward()
    torch.testing.assert_close(other.grad, expected_x)  # a leaf the caller made keeps its gradient
    assert own.grad is None or float(own.grad.abs().max()) == 0.0  # the step's own copy: skipped, by design


# --- gradcheck of every custom Function ---------------------------------------------------------------------------

def _double(*shape, layout=torch.contiguous_format):
    return torch.randn(*shape, dtype=torch.float64).contiguous(memory_format=layout).requires_grad_()


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("shape, kernel, padding", [((3, 6, 10, 12), 3, (0, 0)), ((2, 5, 9, 9), 5, (2, 2)),
                                                    ((2, 4, 8, 7), 5, (1, 2))])
def test_the_one_channel_input_gradient_is_the_transposed_convolution(layout, shape, kernel, padding):
    torch.manual_seed(2)
    grad, weight = _double(*shape, layout=layout), _double(shape[1], 1, kernel, kernel)
    size = (shape[0], 1, shape[2] + kernel - 1 - 2 * padding[0], shape[3] + kernel - 1 - 2 * padding[1])

    def ours(g, w):
        return fp._OneChannelInputGradient.apply(g, w, size, padding)

    torch.testing.assert_close(ours(grad, weight), F.conv_transpose2d(grad, weight, padding=padding))
    assert torch.autograd.gradcheck(ours, (grad, weight))


CONV_CASES = [((1, 1), (0, 0), (1, 1), 1), ((2, 2), (1, 1), (1, 1), 3), ((2, 1), (1, 2), (2, 1), 2),
              ((1, 1), (2, 2), (1, 1), 1)]


@pytest.mark.parametrize("stride, padding, dilation, channels", CONV_CASES)
def test_the_explicit_convolution_passes_gradcheck_in_both_passes(stride, padding, dilation, channels):
    torch.manual_seed(4)
    x, w, b = _double(2, channels, 9, 8), _double(4, channels, 3, 3), _double(4)
    settings = (stride, padding, dilation)
    torch.testing.assert_close(fp._ExplicitConv2d.apply(x, w, b, settings, fp.Window(False, open=False)),
                               F.conv2d(x, w, b, *settings))
    after = fp.Window(second_order=True, open=False)  # the loss's pass: input, weight and bias gradients
    assert torch.autograd.gradcheck(lambda x, w, b: fp._ExplicitConv2d.apply(x, w, b, settings, after), (x, w, b))
    penalty = fp.Window(second_order=True, penalty_running=True)  # the penalty's pass: differentiable ∇ₓ

    def input_gradient(x, w):
        out = fp._ExplicitConv2d.apply(x, w.detach(), None, settings, penalty)
        return torch.autograd.grad(out.square().sum(), x, create_graph=True)[0]

    assert torch.autograd.gradcheck(lambda x: fp._ExplicitConv2d.apply(x, w.detach(), None, settings, penalty), (x,))
    penalty_value = input_gradient(x, w)
    expected = torch.autograd.grad(F.conv2d(x, w.detach(), None, *settings).square().sum(), x, create_graph=True)[0]
    torch.testing.assert_close(penalty_value, expected)


def test_channel_moments_pass_gradcheck_and_gradgradcheck():
    torch.manual_seed(5)
    for shape in ((6, 3), (4, 3, 5, 5)):
        z = _double(*shape)
        assert torch.autograd.gradcheck(fp._ChannelMoments.apply, (z,))
        assert torch.autograd.gradgradcheck(fp._ChannelMoments.apply, (z,))


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_flatten_passes_gradcheck_and_keeps_the_layout(layout):
    z = _double(2, 3, 4, 5, layout=layout)
    assert torch.autograd.gradcheck(fp._Flatten.apply, (z,))
    flat = fp._Flatten.apply(z)
    (grad,) = torch.autograd.grad(flat, z, torch.randn_like(flat))
    assert grad.is_contiguous(memory_format=layout)


POOL_CASES = [((2, 2), (2, 2), (0, 0), False), ((3, 3), (2, 2), (1, 1), True), ((3, 2), (1, 2), (1, 0), False),
              ((2, 2), (2, 2), (0, 0), True)]


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("kernel, stride, padding, ceil_mode", POOL_CASES)
def test_max_pooling_passes_gradcheck_and_gradgradcheck(kernel, stride, padding, ceil_mode, layout):
    torch.manual_seed(6)
    n, c, h, w = 2, 3, 7, 9  # distinct, well-separated values: no ties for the finite differences to flip
    x = (torch.randperm(n * c * h * w, dtype=torch.float64).view(n, c, h, w) / 10).contiguous(memory_format=layout)
    x.requires_grad_()
    settings = (kernel, stride, padding, (1, 1), ceil_mode)

    def ours(z):
        return fp._ExplicitMaxPool2d.apply(z, settings)

    torch.testing.assert_close(ours(x), F.max_pool2d(x, kernel, stride, padding, 1, ceil_mode))
    assert torch.autograd.gradcheck(ours, (x,), eps=1e-3)
    assert torch.autograd.gradgradcheck(ours, (x,), eps=1e-3)
    _, indices = F.max_pool2d(x.detach(), kernel, stride, padding, 1, ceil_mode, return_indices=True)
    grad = _double(*indices.shape)
    assert torch.autograd.gradcheck(lambda g: fp._MaxPoolInputGradient.apply(g, x.detach(), indices), (grad,))


# --- What it refuses ----------------------------------------------------------------------------------------------

class _Custom(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)

    def forward(self, x):
        return self.conv(x).mean((2, 3))


@pytest.mark.parametrize("model, named", [
    (_Custom(), "_Custom is not a layer the fast path knows"),
    (nn.Sequential(nn.Conv2d(2, 4, 3, groups=2), nn.Flatten()), "groups=1"),
    (nn.Sequential(nn.Conv2d(1, 4, 3, padding="same"), nn.Flatten()), "numeric zero padding"),
    (nn.Sequential(nn.Conv2d(1, 4, 3), nn.AvgPool2d(2), nn.Flatten()), "module 1: torch.nn.modules.pooling.AvgPool2d"),
    (nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4, momentum=None)), "momentum"),
    (nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(2)), "flatten(1)"),
    (ReferenceFeatures(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2)), "pool first"),
])
def test_a_model_with_a_layer_it_does_not_know_is_refused_with_a_reason(model, named):
    said = []
    assert fp.fast_penalty_for(model, say=said.append) is None
    assert len(said) == 1 and named in said[0] and "plain autograd" in said[0]


def test_a_model_off_the_cpu_is_refused():
    model = PaperCNN(width=8).to("meta")
    assert "CPU only" in fp.fast_penalty_refusal(model)


def test_training_opts_in_and_falls_back_once(monkeypatch, capsys):
    """The loop builds the fast path once per run when asked, and says once that a model it does not know trains
    with plain autograd."""
    from gradviz.training import loop
    from gradviz.training.config import TrainConfig

    config = TrainConfig(defense="gradreg", lam=1.0, fast_penalty=True, device="cpu")
    phase = loop._Phase("gradreg", PaperCNN(width=8), config.loss_settings())
    assert isinstance(loop._fast_path(phase, config), fp.FastPenalty)
    unknown = loop._Phase("gradreg", _Custom(), config.loss_settings())
    assert loop._fast_path(unknown, config) is None
    assert capsys.readouterr().err.count("plain autograd") == 1
    assert loop._fast_path(phase, TrainConfig(defense="gradreg", lam=1.0, device="cpu")) is None  # not asked
    assert "fast_penalty" not in config.settings()  # how a run computes, not what it learns
