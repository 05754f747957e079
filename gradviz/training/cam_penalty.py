"""A penalty on a Grad-CAM map inside the annotation: "right for the right reasons" on Grad-CAM (RRR-G).

Schramowski et al. (Nature Machine Intelligence 2020) penalise the Grad-CAM map (Selvaraju et al., ICCV 2017)
of the true class where a person marked "not here", instead of the input gradient that RRR penalises. Grad-CAM
lives at the last convolution's resolution and is upsampled to the image, so the penalty is smoother and cheaper
than the input gradient's (no second derivative through the first layers), and it works for any model with a
convolution: the map is taken at the last `nn.Conv2d` the forward pass runs through.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

CAM_FLOOR = 1e-8  # keeps an all-zero map (nothing to penalise) at zero


class NoConvolution(ValueError):
    """The model has no nn.Conv2d, so it has no Grad-CAM map to penalise."""


def last_convolution(model: nn.Module) -> nn.Module:
    """The last nn.Conv2d among the model's modules (registration order: the order of the forward pass for
    Sequential stacks, torchvision's and timm's networks)."""
    convolutions = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convolutions:
        raise NoConvolution(f"{type(model).__name__} has no nn.Conv2d: a Grad-CAM penalty (rrr-g) needs a convolutional "
                            "model; use rrr (input gradients) or counterexamples, which take any model")
    return convolutions[-1]


def logits_and_activations(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits of `x` and the output of the model's last convolution in the same forward pass."""
    seen: list[torch.Tensor] = []
    handle = last_convolution(model).register_forward_hook(lambda module, inputs, output: seen.append(output))
    try:
        logits = model(x)
    finally:
        handle.remove()
    return logits, seen[-1]


def gradcam(logits: torch.Tensor, activations: torch.Tensor, classes: torch.Tensor, size: tuple[int, int],
            create_graph: bool = True) -> torch.Tensor:
    """Grad-CAM maps [N, 1, *size] of `classes`: ReLU(Σₖ αₖ Aₖ), αₖ the spatial mean of ∂ logit / ∂Aₖ, bilinearly
    upsampled. With `create_graph` the map stays differentiable in the weights, as a training penalty needs."""
    chosen = logits.gather(1, classes.view(-1, 1)).sum()
    (grads,) = torch.autograd.grad(chosen, activations, create_graph=create_graph)
    weights = grads.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * activations).sum(1, keepdim=True))
    return F.interpolate(cam, size=size, mode="bilinear", align_corners=False)


def cam_penalty(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, mean ‖A ⊙ GradCAM_y(x) / max GradCAM_y(x)‖²) with A = `mask` [N, 1, H, W] (1 = where the model must
    not look). Each map is divided by its own largest value, so λ means the same for any model: Grad-CAM's raw values
    scale with the logits and the last layer's activations (on Decoy MNIST's CNN the raw penalty was ~1e-4, and λ
    had to be 10⁴ to move anything), while the shape of the map is what a person marked."""
    logits, activations = logits_and_activations(model, x)
    cam = gradcam(logits, activations, y, tuple(x.shape[-2:]))
    peak = cam.flatten(1).amax(1).view(-1, 1, 1, 1)
    return logits, (mask * cam / (peak + CAM_FLOOR)).pow(2).flatten(1).sum(1).mean()
