"""An opt-in, fenced fast path for the gradreg training step on CPU (exact and finite-difference penalties).

PyTorch's own second derivatives of a small CNN are slow on CPU in places: a convolution's double backward runs
as a convolution with the batch taken as channels (far from oneDNN's tuned shapes), fused batch norm's reduces
over the batch dimension alone, and max pooling's turns channels-last tensors into the default layout. This
module runs the *same* model's forward with its own derivatives of those layers, for one training step at a time:

    fast = fast_penalty_for(model)          # None, with `fast_penalty_refusal(model)` saying why, if unknown
    with fast.window(second_order=True, own_input=x) as window:
        logits = window.forward(x)
        with window.penalty_pass():
            penalty = exact_penalty(x, losses_of(logits))
    (loss + lam * penalty).backward()       # after the window: weight gradients

Inside the window a backward pass is allowed only inside `penalty_pass()` (it makes input gradients only); any
other raises. After the window the backward makes weight gradients, and skips only the gradient of `own_input`,
the step's own detached copy of the batch that nobody else holds. Nothing is global: the model's modules are
plain `torch.nn` layers, read (never replaced) by `FastPenalty.forward`. It refuses any model with a module it
does not know, and any device but the CPU (it has never been measured on a GPU). Values are PyTorch's own to
float rounding (tests/training/test_fast_penalty.py, float64); benchmarks/train_step.py times it.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from gradviz.nets.architecture import PaperCNN, ReferenceFeatures, ShiftOnlyBatchNorm


class FastPathMisuse(RuntimeError):
    """A backward pass inside the fast path's window that is not the penalty's: its weight gradients would be lost."""


@dataclass
class Window:
    """One training step's window: open while the forward pass and the penalty run; `penalty_running` while the
    penalty's own backward (its input gradient) runs."""

    second_order: bool
    own_input: torch.Tensor | None = None
    open: bool = True
    penalty_running: bool = False

    def check_backward(self) -> bool:
        """True for the penalty's pass (input gradients only), False after the window (weight gradients); a backward
        inside the window but outside the penalty's pass is refused."""
        if self.open and not self.penalty_running:
            raise FastPathMisuse("a backward pass ran inside the fast path's window outside `penalty_pass()`: "
                                 "it would skip the convolutions' weight gradients; run it after the window closes")
        return self.open


def _pair(value: int | tuple) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


# --- Convolution ---------------------------------------------------------------------------------------------------

def _transposed_input_gradient(grad: torch.Tensor, weight: torch.Tensor, input_shape: torch.Size, stride: tuple,
                               padding: tuple, dilation: tuple) -> torch.Tensor:
    """∇ of a convolution's input as conv_transpose2d(grad, weight): the same values as PyTorch's own input
    gradient, but its own weight derivative is an ordinary first-order weight gradient."""
    extra = [size - ((g - 1) * s - 2 * p + d * (k - 1) + 1) for size, g, s, p, d, k in
             zip(input_shape[2:], grad.shape[2:], stride, padding, dilation, weight.shape[2:])]
    return F.conv_transpose2d(grad, weight, None, stride, padding, extra, 1, dilation)


def _is_channels_last(z: torch.Tensor) -> bool:
    return z.is_contiguous(memory_format=torch.channels_last)


def _channels_by_pixels(grad: torch.Tensor) -> torch.Tensor:
    """`grad` [N, C, H, W] as a [C, N·H·W] matrix, read without a copy where its layout allows."""
    c = grad.shape[1]
    if _is_channels_last(grad):
        return grad.permute(0, 2, 3, 1).reshape(-1, c).t()
    return grad.transpose(0, 1).reshape(c, -1)


def _tap_planes(grad: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """[k·k, N, H, W]: each kernel tap's weights contracted with `grad` over channels, as one matrix product."""
    n, _, h, w = grad.shape
    return (taps.t() @ _channels_by_pixels(grad)).view(-1, n, h, w)


class _OneChannelInputGradient(torch.autograd.Function):
    """∇ of a one-channel image through a stride-1, dilation-1 convolution (the first layer: ∇ₓ itself) as one
    matrix product and k·k shifted additions; oneDNN runs the transposed convolution into one channel at a few
    GFLOP/s."""

    @staticmethod
    def forward(ctx, grad: torch.Tensor, weight: torch.Tensor, input_shape: tuple, padding: tuple) -> torch.Tensor:
        ctx.save_for_backward(grad, weight)
        ctx.input_shape, ctx.padding = input_shape, padding
        kh, kw = weight.shape[2:]
        planes = _tap_planes(grad, weight.reshape(weight.shape[0], -1))
        n, h, w = planes.shape[1:]
        out = planes.new_zeros(n, h + kh - 1, w + kw - 1)
        for tap, plane in enumerate(planes):
            i, j = divmod(tap, kw)
            out[:, i:i + h, j:j + w] += plane
        (ph, pw), (hi, wi) = padding, input_shape[2:]
        return out[:, ph:ph + hi, pw:pw + wi].unsqueeze(1).contiguous()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_grad: torch.Tensor):
        grad, weight = ctx.saved_tensors
        (ph, pw), (kh, kw) = ctx.padding, weight.shape[2:]
        n, c, h, w = grad.shape
        spread = F.pad(grad_grad[:, 0], (pw, w + kw - 1 - pw - grad_grad.shape[3], ph, h + kh - 1 - ph - grad_grad.shape[2]))
        planes = torch.stack([spread[:, i:i + h, j:j + w] for i in range(kh) for j in range(kw)]).view(kh * kw, -1)
        taps = weight.reshape(c, -1)
        if _is_channels_last(grad):
            d_grad = (planes.t() @ taps.t()).view(n, h, w, c).permute(0, 3, 1, 2)
        else:
            d_grad = (taps @ planes).view(c, n, h, w).transpose(0, 1).contiguous()
        grad_weight = (_channels_by_pixels(grad) @ planes.t()).view_as(weight) if ctx.needs_input_grad[1] else None
        return d_grad, grad_weight, None, None


def _input_gradient(grad: torch.Tensor, weight: torch.Tensor, x: torch.Tensor, settings: tuple) -> torch.Tensor:
    stride, padding, dilation = settings
    if weight.shape[1] == 1 and stride == (1, 1) and dilation == (1, 1):
        return _OneChannelInputGradient.apply(grad, weight, tuple(x.shape), padding)
    return _transposed_input_gradient(grad, weight, x.shape, stride, padding, dilation)


class _ExplicitConv2d(torch.autograd.Function):
    """conv2d whose backward is split by the window: input gradients (differentiable) in the penalty's pass, weight
    and bias gradients after the window."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, settings: tuple,
                window: Window) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.settings, ctx.has_bias, ctx.window = settings, bias is not None, window
        ctx.own_input = x is window.own_input
        return F.conv2d(x, weight, bias, *settings)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        penalty_pass = ctx.window.check_backward()
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0] and (penalty_pass or not ctx.own_input):
            grad_x = _input_gradient(grad, weight, x, ctx.settings)
        wants_bias = ctx.has_bias and ctx.needs_input_grad[2]
        if not penalty_pass and (ctx.needs_input_grad[1] or wants_bias):
            grad_w, grad_b = _weight_and_bias_gradients(grad, x, weight, ctx.settings, wants_bias)
        return grad_x, grad_w, grad_b, None, None


def _weight_and_bias_gradients(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, settings: tuple,
                               with_bias: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The weight (and bias) gradient of conv2d in one call of ATen's `convolution_backward`, the operator behind
    the public `torch.nn.grad.conv2d_weight`. That wrapper passes an expanded stand-in for the weight, so oneDNN
    loses the channels-last layout: measured 33 ms against 20 ms a call and 1.2× the whole finite-difference step
    (AMD EPYC, 1 thread, batch 128). Output mask: (input, weight, bias)."""
    stride, padding, dilation = settings
    _, grad_w, grad_b = torch.ops.aten.convolution_backward(
        grad, x, weight, [weight.shape[0]] if with_bias else None, list(stride), list(padding), list(dilation),
        False, [0, 0], 1, [False, True, with_bias])
    return grad_w, grad_b


def _conv_settings(conv: nn.Conv2d) -> tuple:
    return _pair(conv.stride), _pair(conv.padding), _pair(conv.dilation)


# --- Batch norm ----------------------------------------------------------------------------------------------------

BatchNorm = nn.BatchNorm1d | nn.BatchNorm2d


def _per_channel_count(z: torch.Tensor) -> int:
    """How many values of each channel a batch holds: what batch norm's statistics average over."""
    return z.numel() // z.shape[1]


class _ChannelMoments(torch.autograd.Function):
    """Per-channel mean and biased variance of `z`, kept as [1, C, 1, …] so they broadcast against it. Its
    gradient is one fused `a + b·z` over the full tensor, where autograd's own graph of the same sums takes
    a dozen full-size ops, and more again in the second derivative."""

    @staticmethod
    def forward(ctx, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dims, count = [0, *range(2, z.dim())], _per_channel_count(z)
        mean = z.sum(dims, keepdim=True) / count
        var = (z - mean).square().sum(dims, keepdim=True) / count
        ctx.save_for_backward(z, mean)
        return mean, var

    @staticmethod
    def backward(ctx, grad_mean: torch.Tensor, grad_var: torch.Tensor) -> torch.Tensor:
        z, mean = ctx.saved_tensors
        count = _per_channel_count(z)
        slope = grad_var * (2 / count)
        return torch.addcmul(grad_mean / count - slope * mean, z, slope)


def batch_statistics(norm: BatchNorm, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Training-mode mean and biased variance per channel (shaped to broadcast against `z`), updating `norm`'s
    running statistics exactly as PyTorch's batch norm does (momentum, unbiased variance)."""
    mean, var = _ChannelMoments.apply(z)
    count = _per_channel_count(z)
    with torch.no_grad():
        norm.running_mean.lerp_(mean.flatten(), norm.momentum)
        norm.running_var.lerp_(var.flatten() * count / max(count - 1, 1), norm.momentum)
        norm.num_batches_tracked += 1
    return mean, var


def scale_and_shift(norm: BatchNorm, mean: torch.Tensor, var: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch norm's per-channel map z ↦ z·scale + shift for these statistics (shaped like them)."""
    scale = torch.rsqrt(var + norm.eps)
    if norm.weight is not None:
        scale = scale * norm.weight.view_as(scale)
    shift = -mean * scale if norm.bias is None else norm.bias.view_as(scale) - mean * scale
    return scale, shift


def _statistics(norm: BatchNorm, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if norm.training:
        return batch_statistics(norm, z)
    shape = (1, -1) + (1,) * (z.dim() - 2)
    return norm.running_mean.view(shape), norm.running_var.view(shape)


def _normalise(norm: BatchNorm, z: torch.Tensor) -> torch.Tensor:
    """Batch norm as one full-size op, z·scale + shift (scale and shift per channel)."""
    scale, shift = scale_and_shift(norm, *_statistics(norm, z))
    return torch.addcmul(shift, z, scale)


def _pooled_normalise(norm: BatchNorm, pool: nn.MaxPool2d, z: torch.Tensor, window: Window) -> torch.Tensor:
    """max-pool(ReLU(norm(z))) computed as ReLU(norm(max-pool(z))) with the statistics of the unpooled z: the same
    function, since batch norm's per-channel map is increasing (no scale γ) and ReLU commutes with max, but its
    elementwise work (and its second derivative) runs on a quarter of the activations."""
    scale, shift = scale_and_shift(norm, *_statistics(norm, z))
    return F.relu(torch.addcmul(shift, _max_pool(pool, z, window), scale))


# --- Max pooling and flattening ----------------------------------------------------------------------------------

def _plane_gather(grad: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """out[n, c, i, j] = grad[n, c].flatten()[indices[n, c, i, j]] in the layout of `indices`."""
    if indices.is_contiguous() or not _is_channels_last(indices):
        return grad.flatten(2).gather(2, indices.flatten(2)).view_as(indices)
    n, c, h, w = indices.shape
    source = grad.permute(0, 2, 3, 1).reshape(n, -1, c)
    picked = source.gather(1, indices.permute(0, 2, 3, 1).reshape(n, h * w, c))
    return picked.view(n, h, w, c).permute(0, 3, 1, 2)


def _plane_scatter(grad: torch.Tensor, indices: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The adjoint of `_plane_gather`: each grad value added at its index of a zero tensor shaped and laid out like
    `like` (overlapping windows add up, as PyTorch's own max-pool gradient does)."""
    n, c, h, w = like.shape
    if not _is_channels_last(like) or like.is_contiguous():
        out = grad.new_zeros(n, c, h * w)
        return out.scatter_add_(2, indices.flatten(2), grad.flatten(2)).view(n, c, h, w)
    out = grad.new_zeros(n, h * w, c)
    out.scatter_add_(1, indices.permute(0, 2, 3, 1).reshape(n, -1, c), grad.permute(0, 2, 3, 1).reshape(n, -1, c))
    return out.view(n, h, w, c).permute(0, 3, 1, 2)


class _MaxPoolInputGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, grad: torch.Tensor, x: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(indices)
        return _plane_scatter(grad, indices, x)

    @staticmethod
    def backward(ctx, grad_grad: torch.Tensor):
        (indices,) = ctx.saved_tensors
        return _plane_gather(grad_grad, indices), None, None


class _ExplicitMaxPool2d(torch.autograd.Function):
    """max_pool2d whose input gradient is a scatter that keeps the input's layout, and is differentiated as a
    gather in that layout (PyTorch's second derivative of max pooling returns the default layout)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, settings: tuple) -> torch.Tensor:
        out, indices = F.max_pool2d(x, *settings, return_indices=True)
        ctx.save_for_backward(x, indices)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, indices = ctx.saved_tensors
        return _MaxPoolInputGradient.apply(grad, x, indices), None


def _max_pool(pool: nn.MaxPool2d, x: torch.Tensor, window: Window) -> torch.Tensor:
    if not window.second_order:
        return pool(x)
    settings = (_pair(pool.kernel_size), _pair(pool.stride or pool.kernel_size), _pair(pool.padding),
                _pair(pool.dilation), pool.ceil_mode)
    return _ExplicitMaxPool2d.apply(x, settings)


class _Flatten(torch.autograd.Function):
    """flatten(1) whose gradient keeps a channels-last input's layout (PyTorch's hands back the default layout, and
    every op below then mixes layouts, which runs several times slower on CPU)."""

    @staticmethod
    def forward(ctx, z: torch.Tensor) -> torch.Tensor:
        ctx.shape = z.shape
        ctx.channels_last = z.dim() == 4 and not z.is_contiguous() and _is_channels_last(z)
        return z.flatten(1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.reshape(ctx.shape)
        return grad.contiguous(memory_format=torch.channels_last) if ctx.channels_last else grad


# --- What the fast path knows, and the forward pass through it ----------------------------------------------------

PLAIN = (nn.ReLU, nn.Dropout, nn.Linear)  # run as they are: their derivatives are already cheap
CONTAINERS = (PaperCNN, ReferenceFeatures, nn.Sequential)  # whose forward is known: children in order


def _refusal(module: nn.Module) -> str | None:
    """Why the fast path cannot run `module` itself (its children are checked separately), or None."""
    kind = type(module)
    if kind is ReferenceFeatures:
        shape = [type(m) for m in module]
        if shape != [nn.Conv2d, ShiftOnlyBatchNorm, nn.ReLU, nn.MaxPool2d] * (len(module) // 4) or not shape:
            return "ReferenceFeatures must be (conv, shift-only batch norm, ReLU, max-pool) blocks to pool first"
        return None
    if kind in CONTAINERS or kind in PLAIN:
        return None
    if kind is nn.Conv2d:
        if module.groups != 1 or module.padding_mode != "zeros" or isinstance(module.padding, str):
            return f"{module!r}: only groups=1 and numeric zero padding are known"
        return None
    if kind is nn.MaxPool2d:
        return f"{module!r}: return_indices is not known" if module.return_indices else None
    if kind in (nn.BatchNorm1d, nn.BatchNorm2d, ShiftOnlyBatchNorm):
        if not module.track_running_stats or module.momentum is None:
            return f"{module!r}: only batch norm with running statistics and a momentum is known"
        return None
    if kind is nn.Flatten:
        return None if (module.start_dim, module.end_dim) == (1, -1) else f"{module!r}: only flatten(1) is known"
    return f"{kind.__module__}.{kind.__qualname__} is not a layer the fast path knows"


def fast_penalty_refusal(model: nn.Module) -> str | None:
    """Why `model` cannot take the fast path (the first unknown module, or a device other than the CPU), or None."""
    devices = {p.device.type for p in model.parameters()}
    if devices - {"cpu"}:
        return f"the fast path runs on the CPU only (never measured on a GPU); this model is on {sorted(devices)}"
    for name, module in model.named_modules():
        reason = _refusal(module)
        if reason is not None:
            return f"module {name or '(the model)'}: {reason}"
    return None


class FastPenalty:
    """The fast forward pass of one model whose every module `_refusal` accepts (build it with `fast_penalty_for`)."""

    def __init__(self, model: nn.Module):
        self.model = model

    @contextmanager
    def window(self, second_order: bool, own_input: torch.Tensor | None = None) -> Iterator[StepWindow]:
        """One step's window; `second_order` when the input gradient will itself be differentiated (exact penalty)."""
        window = Window(second_order, own_input)
        try:
            yield StepWindow(self, window)
        finally:
            window.open = False

    def run(self, module: nn.Module, x: torch.Tensor, window: Window) -> torch.Tensor:
        kind = type(module)
        if kind is PaperCNN:
            return self.run(module.classifier, self.run(module.features, x, window), window)
        if kind is ReferenceFeatures and window.second_order:  # pool before normalising: same function, less work
            for i in range(0, len(module), 4):
                x = _pooled_normalise(module[i + 1], module[i + 3], self.run(module[i], x, window), window)
            return x
        if kind in CONTAINERS:
            for child in module:
                x = self.run(child, x, window)
            return x
        if kind is nn.Conv2d:
            return _ExplicitConv2d.apply(x, module.weight, module.bias, _conv_settings(module), window)
        if kind is nn.MaxPool2d:
            return _max_pool(module, x, window)
        if kind in (nn.BatchNorm1d, nn.BatchNorm2d, ShiftOnlyBatchNorm):
            return _normalise(module, x) if window.second_order and module.training else module(x)
        if kind is nn.Flatten:
            return _Flatten.apply(x)
        return module(x)


@dataclass
class StepWindow:
    """What a training step uses inside the window: the fast forward, and the penalty's backward pass."""

    fast: FastPenalty
    state: Window

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fast.run(self.fast.model, x, self.state)

    @contextmanager
    def penalty_pass(self) -> Iterator[None]:
        """The penalty's input-gradient pass: the one backward allowed inside the window."""
        self.state.penalty_running = True
        try:
            yield
        finally:
            self.state.penalty_running = False


def fast_penalty_for(model: nn.Module, say: Callable[[str], None] | None = None) -> FastPenalty | None:
    """The fast path for `model`, or None (after telling `say` why, once) when it has a module the fast path does
    not know or lives off the CPU: the caller then uses plain autograd, which is always right."""
    reason = fast_penalty_refusal(model)
    if reason is None:
        return FastPenalty(model)
    if say is not None:
        say(f"fast penalty path not used, plain autograd instead: {reason}")
    return None
