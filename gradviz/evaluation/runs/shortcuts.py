"""How often a model reads Decoy MNIST's swatch instead of the digit: the Clever Hans rate the ground-truth section
reports beside accuracy."""
from __future__ import annotations

import torch
from torch import nn

from gradviz.data.ground_truth import swatch_codes


@torch.no_grad()
def shortcut_share(model: nn.Module, x: torch.Tensor, y: torch.Tensor, masks: torch.Tensor,
                   batch_size: int = 500) -> float:
    """Among images whose swatch codes another class than the digit's, the share the model assigns to the
    swatch's class: near 0 for a model that reads the digit, 1 for one that reads only the swatch."""
    codes = torch.from_numpy(swatch_codes(x.cpu().numpy(), masks.cpu().numpy())).to(y.device)
    misleading = codes != y
    predicted = torch.cat([model(x[i:i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])
    return float((predicted[misleading] == codes[misleading]).float().mean()) if misleading.any() else float("nan")
