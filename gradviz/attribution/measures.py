"""Quantitative interpretability measures the paper lacks: gradient-norm distributions and deletion curves."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from gradviz.nets.architecture import class_count

DELETION_FRACTIONS = (0.0, 0.02, 0.05, 0.1, 0.2, 0.3)


def input_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None,
                   kind: str = "ce") -> torch.Tensor:
    """∇ₓ of the true-label cross-entropy ("ce"), of Σₖ log pₖ ("logsum", the paper's figures),
    or of log p_y ("logp", a chosen class's log-probability, y = that class)."""
    x = x.detach().requires_grad_(True)
    logits = model(x)
    if kind == "ce":
        objective = F.cross_entropy(logits, y, reduction="sum")
    elif kind == "logsum":
        objective = F.log_softmax(logits, 1).sum()
    elif kind == "logp":
        objective = F.log_softmax(logits, 1).gather(1, y.view(-1, 1)).sum()
    else:
        raise ValueError(f"unknown gradient kind {kind!r}; use ce, logsum or logp")
    (grad,) = torch.autograd.grad(objective, x)
    return grad


def gradient_norms(models: dict[str, nn.Module], x: torch.Tensor, y: torch.Tensor) -> pd.DataFrame:
    """Per model and image, ‖∇ₓ log p(true)‖₂ and ‖∇ₓ log p(target)‖₂ with target (y+1) mod K (the paper's box
    plots; the first is also ‖∇ₓ CE(true)‖₂), and ‖∇ₓ Σ log p‖₂ (its saliency maps). Tidy: model, kind, norm.

    Regularized models' true and target norms are alike; a normal model's are not. A distilled model saturates:
    log p(true) is 0 in float32 and its gradient exactly 0, which a log scale cannot show (see `zero_share`).
    """
    frames = []
    for name, model in models.items():
        kinds = (("logp", y, "log p(true)"), ("logp", (y + 1) % class_count(model, x), "log p(target)"),
                 ("logsum", y, "Σ log p"))
        for kind, classes, label in kinds:
            norms = input_gradient(model, x, classes, kind).flatten(1).norm(dim=1).cpu().numpy()
            frames.append(pd.DataFrame({"model": name, "kind": label, "norm": norms}))
    return pd.concat(frames, ignore_index=True)


def mask_share(saliency: np.ndarray, mask: np.ndarray) -> float:
    """Share of a map's total |attribution| inside a ground-truth mask (0 for an all-zero map)."""
    magnitude = np.abs(np.asarray(saliency, dtype=np.float64))
    total = magnitude.sum()
    return float(magnitude[np.asarray(mask, dtype=bool)].sum() / total) if total > 0 else 0.0


def zero_share(norms: pd.DataFrame) -> pd.DataFrame:
    """Share of exactly-zero gradient norms per model and kind (hidden on a log scale)."""
    return norms.assign(zero=norms["norm"] == 0).groupby(["model", "kind"], sort=False)["zero"].mean().reset_index()


@torch.no_grad()
def _delete_top(x: torch.Tensor, saliency: torch.Tensor, fraction: float) -> torch.Tensor:
    """Set the `fraction` most salient pixels of each image to 0 (the background value)."""
    k = int(round(fraction * x[0].numel()))
    if k == 0:
        return x
    flat = saliency.abs().flatten(1)
    top = flat.topk(k, dim=1).indices
    mask = torch.ones_like(flat).scatter_(1, top, 0.0)
    return x * mask.view_as(x)


def deletion_curve(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                   fractions: tuple[float, ...] = DELETION_FRACTIONS) -> pd.DataFrame:
    """Accuracy after deleting the top pixels of the model's own |∇ₓ CE| map, with its area under the curve.

    A lower area means the map found the pixels the model really relies on.
    """
    saliency = input_gradient(model, x, y, "ce")
    with torch.no_grad():
        acc = [float((model(_delete_top(x, saliency, f)).argmax(1) == y).float().mean()) for f in fractions]
    area = sum((b - a) * (p + q) / 2 for a, b, p, q in zip(fractions, fractions[1:], acc, acc[1:]))
    area /= fractions[-1] - fractions[0]
    return pd.DataFrame({"fraction": fractions, "accuracy": acc, "auc": area})


def deletion_curves(models: dict[str, nn.Module], x: torch.Tensor, y: torch.Tensor) -> pd.DataFrame:
    return pd.concat([deletion_curve(m, x, y).assign(model=n) for n, m in models.items()], ignore_index=True)
