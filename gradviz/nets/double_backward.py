"""Convolutions whose input gradient is cheap to differentiate again: the exact double-backpropagation step on CPU.

PyTorch differentiates a convolution's input gradient with respect to its weights by one *forward* convolution
with the batch taken as channels and the whole image as the kernel (oneDNN's verbose log shows
`mb1_ic128oc32_ih28oh5kh28` for the zoo's first layer), a shape far from oneDNN's tuned paths. Inside
`explicit_input_gradients()` a convolution instead returns its input gradient as an explicit transposed
convolution, so that derivative becomes an ordinary first-order weight gradient, which oneDNN has a primitive for.
The values are the same to float rounding (tests/test_double_backward.py); on an AMD EPYC a zoo gradreg step took
11% less time (benchmarks/train_step.py).

Inside the context a convolution's weight gradient is produced only by a first-order backward (grad mode off):
the input-gradient pass of the exact penalty (create_graph=True) needs the input gradient alone, and computing the
weight gradient there would be wasted work.
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

_MODE = threading.local()


@contextmanager
def explicit_input_gradients() -> Iterator[None]:
    """Convolutions run forward inside this block differentiate their input gradients the cheap way."""
    before = getattr(_MODE, "on", False)
    _MODE.on = True
    try:
        yield
    finally:
        _MODE.on = before


def explicit_mode() -> bool:
    return getattr(_MODE, "on", False)


class _ExplicitConv2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: tuple,
                padding: tuple, dilation: tuple) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.settings, ctx.has_bias = (stride, padding, dilation), bias is not None
        return F.conv2d(x, weight, bias, stride, padding, dilation)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        stride, padding, dilation = ctx.settings
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:  # differentiable: its weight derivative is a first-order weight gradient
            grad_x = torch.nn.grad.conv2d_input(x.shape, weight, grad, stride, padding, dilation)
        wants_w = ctx.needs_input_grad[1] or (ctx.has_bias and ctx.needs_input_grad[2])
        if wants_w and not torch.is_grad_enabled():
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
