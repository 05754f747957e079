"""The paper's CNN: conv5×5×32 → pool → conv5×5×64 → pool → FC → dropout → FC10, batch norm on all but the last.

Two layer styles share that shape:
- "zoo" (the committed zoo): biased conv/FC, max-pool *before* batch norm (with γ, ε 1e-5) and ReLU, PyTorch's
  default init. ReLU commutes with max-pooling exactly; only where the batch statistics are taken changes. It
  makes every step, and double backpropagation most of all, cheaper on CPU, because batch norm's second
  derivative then runs on a quarter of the activations (benchmarks/train_step.py measures it).
- "reference" (the authors' TF-slim code, shared/PAPER.md): conv/FC without bias → batch norm with a learned
  shift β but no scale γ, ε 1e-3 → ReLU → max-pool; Xavier-uniform weights. Without γ the network cannot
  shrink a layer's output to shrink its input gradient, which is what the paper's large λ pushes against.

Every layer is a plain `torch.nn` module with no hidden state in `forward`; the gradreg step's opt-in CPU fast
path (gradviz.training.fast_penalty) reads these modules from outside and knows this shape.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

ZOO_WIDTH = 128  # narrower default so the committed zoo stays small
LAYER_STYLES = ("zoo", "reference")
REFERENCE_BN_EPS = 1e-3  # TF-slim's batch_norm default
DIGIT_SHAPE = (28, 28)  # what every card from before image shapes was built for


class ShiftOnlyBatchNorm(nn.BatchNorm1d):
    """Batch norm with a learned shift β and no scale γ (TF-slim `scale=False`); 2-D or 4-D inputs."""

    def __init__(self, num_features: int, eps: float = REFERENCE_BN_EPS):
        super().__init__(num_features, eps=eps, affine=False)
        self.bias = nn.Parameter(torch.zeros(num_features))

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() not in (2, 4):
            raise ValueError(f"expected 2-D or 4-D input, got {input.dim()}-D")


class ReferenceFeatures(nn.Sequential):
    """(conv → shift-only batch norm → ReLU → 2×2 max-pool) × 2: a plain Sequential, named so that the fast path
    knows it may pool before normalising (the same function: the norm's per-channel map is increasing)."""


def _flat_features(image_shape: tuple[int, int]) -> int:
    """Features after the two 2×2 poolings of 64 channels: 7·7·64 for a 28×28 digit."""
    height, width = image_shape
    return (height // 4) * (width // 4) * 64


def _zoo_layers(width: int, num_classes: int, dropout: float,
                image_shape: tuple[int, int]) -> tuple[nn.Sequential, nn.Sequential]:
    features = nn.Sequential(
        nn.Conv2d(1, 32, 5, padding=2), nn.MaxPool2d(2), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 64, 5, padding=2), nn.MaxPool2d(2), nn.BatchNorm2d(64), nn.ReLU(),
    )
    classifier = nn.Sequential(
        nn.Flatten(),
        nn.Linear(_flat_features(image_shape), width), nn.BatchNorm1d(width), nn.ReLU(), nn.Dropout(dropout),
        nn.Linear(width, num_classes),
    )
    return features, classifier


def _reference_layers(width: int, num_classes: int, dropout: float,
                      image_shape: tuple[int, int]) -> tuple[nn.Sequential, nn.Sequential]:
    features = ReferenceFeatures(
        nn.Conv2d(1, 32, 5, padding=2, bias=False), ShiftOnlyBatchNorm(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, padding=2, bias=False), ShiftOnlyBatchNorm(64), nn.ReLU(), nn.MaxPool2d(2),
    )
    classifier = nn.Sequential(
        nn.Flatten(),
        nn.Linear(_flat_features(image_shape), width, bias=False), ShiftOnlyBatchNorm(width), nn.ReLU(), nn.Dropout(dropout),
        nn.Linear(width, num_classes),
    )
    for layer in [*features, *classifier]:
        if isinstance(layer, nn.Conv2d | nn.Linear):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
    return features, classifier


class PaperCNN(nn.Module):
    """Takes images [N, 1, H, W] in [0, 1] (28×28 unless built for another `image_shape`) and returns logits
    [N, num_classes].

    The logits are always at temperature 1, which is how the paper evaluates; defensive distillation divides
    them by its temperature only inside its training loss (gradviz.training.defenses).
    """

    def __init__(self, width: int = ZOO_WIDTH, num_classes: int = 10, dropout: float = 0.5, layers: str = "zoo",
                 image_shape: tuple[int, int] = DIGIT_SHAPE):
        super().__init__()
        if layers not in LAYER_STYLES:
            raise ValueError(f"unknown layer style {layers!r}; use {' or '.join(LAYER_STYLES)}")
        if min(image_shape) < 4:
            raise ValueError(f"images of {image_shape} are too small for two 2×2 poolings")
        self.width = width
        self.layers = layers
        self.image_shape = (int(image_shape[0]), int(image_shape[1]))
        build = _reference_layers if layers == "reference" else _zoo_layers
        self.features, self.classifier = build(width, num_classes, dropout, self.image_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def build_model(architecture: dict, folder: Path | None = None) -> nn.Module:
    """Instantiate the network a model card describes (cards from before layer styles are "zoo", from before
    image shapes 28×28); an "external" one (gradviz.nets.external) reads its file, if any, from `folder`."""
    name = architecture.get("name", "PaperCNN")
    if name == "external":
        from gradviz.nets.external import build_external

        return build_external(architecture, folder)
    if name != "PaperCNN":
        raise ValueError(f"unknown architecture {name!r}")
    return PaperCNN(width=int(architecture["width"]), num_classes=int(architecture.get("num_classes", 10)),
                    layers=architecture.get("layers", "zoo"),
                    image_shape=tuple(architecture.get("image_shape", DIGIT_SHAPE)))


def describe(model: nn.Module) -> dict:
    """The architecture section of a model card."""
    if hasattr(model, "architecture"):  # a model from outside (gradviz.nets.external.Framed)
        return {**model.architecture, "parameters": sum(p.numel() for p in model.parameters())}
    return {
        "name": "PaperCNN",
        "width": model.width,
        "layers": model.layers,
        "num_classes": model.classifier[-1].out_features,
        "image_shape": list(model.image_shape),
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def channels_last(model: nn.Module) -> nn.Module:
    """Store conv weights channels-last (in place): oneDNN's fast convolution path on CPU.

    Outputs are unchanged (to float rounding); forward passes and input gradients run faster on CPU, most of
    all under bf16 autocast (benchmarks/eval_matrix.py and benchmarks/dashboard_latency.py measure it).
    Models stay usable everywhere; only saving needs `.contiguous()` weights, which `save_model` makes.
    """
    return model.to(memory_format=torch.channels_last)


def class_count(model: nn.Module, x: torch.Tensor) -> int:
    """How many classes `model` tells apart (its logits' width): ten for most datasets, two for Block MNIST."""
    with torch.no_grad():
        return int(model(x[:1]).shape[1])


def frozen(model: nn.Module) -> nn.Module:
    """In eval mode with no parameter asking for a gradient (in place): what explaining, attacking and scoring
    need, since they differentiate with respect to the input only."""
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """`model` in eval mode (running batch-norm statistics, no dropout) inside the block, and every submodule's own
    mode restored after it: what an attack or an explanation of a model in training needs, as torchattacks'
    `Attack.__call__` does, without leaving it to each caller."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training
