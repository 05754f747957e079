"""Layers whose input-gradient penalties are cheap on CPU: the gradreg training step (exact and finite-difference).

Inside `explicit_input_gradients()` (opened by the training loss around its forward pass and the penalty's
input-gradient pass) the model's layers record their own backward:
- A convolution returns its input gradient as an explicit transposed convolution, so the exact penalty's
  derivative of it is an ordinary first-order weight gradient (PyTorch's own double backward computes it as a
  convolution with the batch taken as channels and the whole image as the kernel, a shape far from oneDNN's tuned
  paths), and a one-channel image's gradient (∇ₓ itself) as one matrix product and shifted additions.
- A backward pass run while the context is open (the penalty's) makes input gradients only; one run after it
  closes (the loss's) makes weight gradients and skips the gradient of the model's input, which nobody reads and
  which costs a full convolution. The window is recorded at forward time, so it holds on any backward thread.
- With `second_order=True` (the exact penalty) batch norm trains in plain ops and max pooling differentiates its
  input gradient in the input's own layout: PyTorch's second derivatives of both reduce over the batch dimension
  alone or return the default layout, which on channels-last tensors runs many times slower.
The values are PyTorch's own to float rounding (tests/test_double_backward.py); benchmarks/train_step.py times it.
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

_MODE = threading.local()


@dataclass
class _Window:
    second_order: bool
    open: bool = True


@contextmanager
def explicit_input_gradients(second_order: bool = True) -> Iterator[None]:
    """Layers run forward inside this block record the cheap input gradients described above; `second_order` when
    the input gradient will itself be differentiated (the exact penalty)."""
    before = getattr(_MODE, "window", None)
    _MODE.window = window = _Window(second_order)
    try:
        yield
    finally:
        window.open = False
        _MODE.window = before


def _window() -> _Window | None:
    return getattr(_MODE, "window", None)


def explicit_mode() -> bool:
    """Inside `explicit_input_gradients()`."""
    return _window() is not None


def second_order_mode() -> bool:
    """Inside `explicit_input_gradients(second_order=True)`."""
    window = _window()
    return window is not None and window.second_order


def _transposed_input_gradient(grad: torch.Tensor, weight: torch.Tensor, input_shape: torch.Size, stride: tuple,
                               padding: tuple, dilation: tuple) -> torch.Tensor:
    """∇ of a convolution's input as conv_transpose2d(grad, weight): the same values as PyTorch's
    convolution_backward, but its own weight derivative is an ordinary first-order weight gradient."""
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
    """∇ of a one-channel image through a stride-1 convolution (the first layer: ∇ₓ itself) as one matrix product
    and k·k shifted additions; oneDNN runs the transposed convolution into one channel at a few GFLOP/s."""

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
    one_channel = weight.shape[1] == 1 and tuple(stride) == (1, 1) and tuple(dilation) == (1, 1)
    if one_channel and grad.dim() == 4:
        return _OneChannelInputGradient.apply(grad, weight, tuple(x.shape), tuple(padding))
    return _transposed_input_gradient(grad, weight, x.shape, stride, padding, dilation)


class _ExplicitConv2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: tuple,
                padding: tuple, dilation: tuple) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.settings, ctx.has_bias = (stride, padding, dilation), bias is not None
        ctx.leaf_input, ctx.window = x.grad_fn is None, _window()
        return F.conv2d(x, weight, bias, stride, padding, dilation)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        stride, padding, dilation = ctx.settings
        grad_x = grad_w = grad_b = None
        penalty_pass = ctx.window.open
        if ctx.needs_input_grad[0] and (penalty_pass or not ctx.leaf_input):
            grad_x = _input_gradient(grad, weight, x, ctx.settings)
        wants_w = ctx.needs_input_grad[1] or (ctx.has_bias and ctx.needs_input_grad[2])
        if wants_w and not penalty_pass:
            _, grad_w, grad_b = torch.ops.aten.convolution_backward(
                grad, x, weight, [weight.shape[0]] if ctx.has_bias else None, list(stride), list(padding),
                list(dilation), False, [0, 0], 1, [False, True, ctx.has_bias])
        return grad_x, grad_w, grad_b, None, None, None


class Conv2d(nn.Conv2d):
    """nn.Conv2d (same parameters and state-dict keys) that switches to the explicit input gradient inside
    `explicit_input_gradients()`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if explicit_mode() and self.groups == 1 and self.padding_mode == "zeros" and isinstance(self.padding, tuple):
            return _ExplicitConv2d.apply(x, self.weight, self.bias, self.stride, self.padding, self.dilation)
        return super().forward(x)


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


def batch_statistics(norm: nn.modules.batchnorm._BatchNorm, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Training-mode mean and biased variance per channel (shaped to broadcast against `z`), updating `norm`'s
    running statistics exactly as PyTorch's batch norm does (momentum, unbiased variance)."""
    mean, var = _ChannelMoments.apply(z)
    count = _per_channel_count(z)
    with torch.no_grad():
        norm.running_mean.lerp_(mean.flatten(), norm.momentum)
        norm.running_var.lerp_(var.flatten() * count / max(count - 1, 1), norm.momentum)
        norm.num_batches_tracked += 1
    return mean, var


def scale_and_shift(norm: nn.modules.batchnorm._BatchNorm, mean: torch.Tensor,
                    var: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch norm's per-channel map z ↦ z·scale + shift for these statistics (shaped like them)."""
    scale = torch.rsqrt(var + norm.eps)
    if norm.weight is not None:
        scale = scale * norm.weight.view_as(scale)
    shift = -mean * scale if norm.bias is None else norm.bias.view_as(scale) - mean * scale
    return scale, shift


def normalise_in_plain_ops(norm: nn.modules.batchnorm._BatchNorm, z: torch.Tensor) -> torch.Tensor:
    """Training-mode batch norm as one full-size op, z·scale + shift (scale and shift per channel)."""
    scale, shift = scale_and_shift(norm, *batch_statistics(norm, z))
    return torch.addcmul(shift, z, scale)


def _trains_in_plain_ops(norm: nn.modules.batchnorm._BatchNorm) -> bool:
    return second_order_mode() and norm.training and norm.track_running_stats and norm.momentum is not None


class PlainOpsInSecondOrder:
    """Mixin for a batch-norm class (same state-dict keys) that trains in plain differentiable ops inside
    `explicit_input_gradients(second_order=True)`: PyTorch's fused batch norm has a second derivative that reduces
    over the batch dimension alone, which on channels-last tensors is ~30× slower than the whole reduction
    (benchmarks/train_step.py)."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return normalise_in_plain_ops(self, z) if _trains_in_plain_ops(self) else super().forward(z)


class BatchNorm1d(PlainOpsInSecondOrder, nn.BatchNorm1d):
    """nn.BatchNorm1d with the cheap second derivative of `PlainOpsInSecondOrder`."""


class BatchNorm2d(PlainOpsInSecondOrder, nn.BatchNorm2d):
    """nn.BatchNorm2d with the cheap second derivative of `PlainOpsInSecondOrder`."""


class _Flatten(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z: torch.Tensor) -> torch.Tensor:
        ctx.shape = z.shape
        ctx.channels_last = z.dim() == 4 and not z.is_contiguous() and _is_channels_last(z)
        return z.flatten(1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.reshape(ctx.shape)
        return grad.contiguous(memory_format=torch.channels_last) if ctx.channels_last else grad


class Flatten(nn.Flatten):
    """nn.Flatten whose gradient keeps a channels-last input's layout: PyTorch's hands back a default-layout
    gradient, and every op below it then mixes layouts, which runs several times slower on CPU."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return _Flatten.apply(z) if self.start_dim == 1 and self.end_dim == -1 else super().forward(z)


def _plane_gather(grad: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """out[n, c, i, j] = grad[n, c].flatten()[indices[n, c, i, j]] in the layout of `indices` (PyTorch's own
    version returns a default-layout tensor even for channels-last inputs)."""
    if indices.is_contiguous() or not _is_channels_last(indices):
        return grad.flatten(2).gather(2, indices.flatten(2)).view_as(indices)
    n, c, h, w = indices.shape
    source = grad.permute(0, 2, 3, 1).reshape(n, -1, c)
    picked = source.gather(1, indices.permute(0, 2, 3, 1).reshape(n, h * w, c))
    return picked.view(n, h, w, c).permute(0, 3, 1, 2)


class _MaxPoolInputGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, grad: torch.Tensor, x: torch.Tensor, indices: torch.Tensor, settings: tuple) -> torch.Tensor:
        ctx.save_for_backward(indices)
        return torch.ops.aten.max_pool2d_with_indices_backward(grad, x, *settings, indices)

    @staticmethod
    def backward(ctx, grad_grad: torch.Tensor):
        (indices,) = ctx.saved_tensors
        return _plane_gather(grad_grad, indices), None, None, None


class _ExplicitMaxPool2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, settings: tuple) -> torch.Tensor:
        out, indices = torch.ops.aten.max_pool2d_with_indices(x, *settings)
        ctx.save_for_backward(x, indices)
        ctx.settings = settings
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, indices = ctx.saved_tensors
        return _MaxPoolInputGradient.apply(grad, x, indices, ctx.settings), None


class MaxPool2d(nn.MaxPool2d):
    """nn.MaxPool2d whose input gradient, inside `explicit_input_gradients()`, is differentiated in the input's own
    layout (PyTorch's second derivative of max pooling turns channels-last into the default layout)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not second_order_mode() or self.return_indices or x.dim() != 4:
            return super().forward(x)
        pair = nn.modules.utils._pair
        settings = (pair(self.kernel_size), pair(self.stride or self.kernel_size), pair(self.padding),
                    pair(self.dilation), self.ceil_mode)
        return _ExplicitMaxPool2d.apply(x, settings)
