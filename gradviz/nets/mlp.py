"""A small multilayer perceptron: the kind of model that takes a shortcut completely.

"Right for the right reasons" (Ross, Hughes & Doshi-Velez 2017) showed its Decoy MNIST shortcut on a fully
connected network that reads raw pixels; our CNN (pooling, batch norm, 2 epochs) follows the swatch on only ~9% of
the test digits where it codes another class (README, "Ground truth"). An annotation loop needs a baseline that
really takes the shortcut, so this one is trained by import path like any outside architecture:
`gradviz train --dataset decoy-mnist --model gradviz.nets.mlp:MLP`.
"""
from __future__ import annotations

from torch import nn


class MLP(nn.Sequential):
    """Flatten → (Linear → ReLU) per hidden width → Linear to the logits."""

    def __init__(self, num_classes: int = 10, in_features: int = 28 * 28, hidden: tuple[int, ...] = (50, 30)):
        widths = (in_features, *hidden)
        layers: list[nn.Module] = [nn.Flatten()]
        for a, b in zip(widths, widths[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        super().__init__(*layers, nn.Linear(widths[-1], num_classes))
