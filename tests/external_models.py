"""Small models "from outside" that the registry tests import by path (tests/ is on pytest's pythonpath and on the
PYTHONPATH the CLI tests give their subprocesses)."""
from __future__ import annotations

import torch
from torch import nn


class TinyNet(nn.Module):
    """conv → ReLU → 4×4 average pool → linear: any image size, `channels` in."""

    def __init__(self, channels: int = 3, num_classes: int = 10):
        super().__init__()
        self.conv = nn.Conv2d(channels, 4, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(torch.relu(self.conv(x))).flatten(1))


class PooledFeatures(nn.Module):
    """Returns [N, C] features, not logits over the classes."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3))


def failing_factory(**kwargs) -> nn.Module:
    raise RuntimeError("this factory always fails")


class FlatNet(nn.Module):
    """conv → ReLU → max-pool → linear for 32×32 images: only operators every ONNX converter knows."""

    def __init__(self, channels: int = 3, num_classes: int = 10):
        super().__init__()
        self.conv = nn.Conv2d(channels, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 16 * 16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.max_pool2d(torch.relu(self.conv(x)), 2).flatten(1))
