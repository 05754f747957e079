"""The paper's CNN: conv5×5×32 → pool → conv5×5×64 → pool → FC → dropout → FC10, batch norm on all but the last.

Max-pooling comes before batch norm and ReLU. ReLU commutes with max-pooling exactly; only where the batch
statistics are taken changes. It makes every step cheaper and double backpropagation 1.6× cheaper on CPU,
because batch norm's second derivative then runs on a quarter of the activations.
"""
from __future__ import annotations

import torch
from torch import nn

PAPER_WIDTH = 1024  # the paper's FC width: about 3.3 M parameters
ZOO_WIDTH = 128  # narrower default so the committed zoo stays small


class PaperCNN(nn.Module):
    """Takes images [N, 1, 28, 28] in [0, 1] and returns logits [N, 10].

    `temperature` divides the logits only in training-time losses (defensive distillation);
    `forward` always returns temperature-1 logits, which is how the paper evaluates.
    """

    def __init__(self, width: int = ZOO_WIDTH, num_classes: int = 10, dropout: float = 0.5):
        super().__init__()
        self.width = width
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 5, padding=2), nn.MaxPool2d(2), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Conv2d(32, 64, 5, padding=2), nn.MaxPool2d(2), nn.BatchNorm2d(64), nn.ReLU(),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(7 * 7 * 64, width), nn.BatchNorm1d(width), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(width, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def build_model(architecture: dict) -> PaperCNN:
    """Instantiate the network a model card describes."""
    name = architecture.get("name", "PaperCNN")
    if name != "PaperCNN":
        raise ValueError(f"unknown architecture {name!r}")
    return PaperCNN(width=int(architecture["width"]), num_classes=int(architecture.get("num_classes", 10)))


def describe(model: PaperCNN) -> dict:
    """The architecture section of a model card."""
    return {
        "name": "PaperCNN",
        "width": model.width,
        "num_classes": model.classifier[-1].out_features,
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def channels_last(model: nn.Module) -> nn.Module:
    """Store conv weights channels-last (in place): oneDNN's fast convolution path on CPU.

    Outputs are unchanged (to float rounding); on our 2-core CPU a forward pass over 10,000 images ran
    2.5× faster in fp32 and about 9× faster under bf16 autocast, and input gradients 1.6× faster.
    Models stay usable everywhere; only saving needs `.contiguous()` weights, which `save_model` makes.
    """
    return model.to(memory_format=torch.channels_last)
