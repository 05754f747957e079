"""The paper's target grids: a digit of every class (rows) pushed towards every class (columns), per model.

Iterated TGSM keeps every iteration, so a viewer can scrub through them without recomputing: one batched
computation per model, all rows × targets at once. JSMA grids hold the final images only.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from gradviz.attacks import NUM_CLASSES, itgsm_steps
from gradviz.jsma import jsma

GRID_ATTACKS = ("itgsm", "jsma")
PAPER_ITERATION = 10  # the iteration the paper's MNIST grids show ("just enough to fully whiten or darken a patch")
GAP = 2  # pixels between cells of an exported grid


@dataclass
class TargetGrid:
    """Adversarial images of `rows` (true classes `labels`) towards every class, for each model.

    images[model]: [iterations + 1, rows, targets, H, W] (iteration 0 is the original);
    target_prob / predicted[model]: the model's own view of every cell at every iteration.
    """

    attack: str
    labels: list[int]
    images: dict[str, torch.Tensor]
    target_prob: dict[str, torch.Tensor]
    predicted: dict[str, torch.Tensor]
    settings: dict = field(default_factory=dict)

    @property
    def iterations(self) -> int:
        return next(iter(self.images.values())).shape[0] - 1

    def cells(self, model: str, iteration: int) -> torch.Tensor:
        """[rows, targets, H, W] images of one model at one iteration (clamped to the last one computed)."""
        return self.images[model][min(iteration, self.iterations)]


def first_of_each_class(x: torch.Tensor, y: torch.Tensor, per_class: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `per_class` images of every class, class by class (the paper's rows)."""
    picks = [int(i) for c in range(NUM_CLASSES) for i in (y == c).nonzero().flatten()[:per_class]]
    if len(picks) < NUM_CLASSES * per_class:
        raise ValueError(f"the sample has fewer than {per_class} image(s) of some class")
    index = torch.tensor(picks)
    return x[index], y[index]


def _all_targets(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image repeated once per class, with those classes as targets: [rows·K, …] and [rows·K]."""
    rows = len(x)
    return x.repeat_interleave(NUM_CLASSES, 0), torch.arange(NUM_CLASSES, device=x.device).repeat(rows)


def _own_view(probs: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """p(target) and the predicted class from class probabilities [N, K]."""
    return probs.gather(1, target.view(-1, 1)).flatten(), probs.argmax(1)


def _probabilities(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.softmax(model(images), 1)


def itgsm_path(model: nn.Module, x: torch.Tensor, target: torch.Tensor, step: float = 0.1, steps: int = 25,
               eps: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Every iterate of iterated TGSM, [steps + 1, N, …], unprojected as in the paper or kept in an ε-ball, and
    the model's probabilities [steps + 1, N, K] of each: the step's own forward pass gives them, so a path costs
    one gradient per iteration plus one forward pass."""
    path, probs = [x.detach()], []
    for logits, adv in itgsm_steps(model, x, target, step, steps, eps):
        path.append(adv)
        probs.append(torch.softmax(logits, 1))
    with torch.no_grad():
        probs.append(torch.softmax(model(path[-1]), 1))
    return torch.stack(path), torch.stack(probs)


def target_grid(models: dict[str, nn.Module], x: torch.Tensor, labels: torch.Tensor, attack: str = "itgsm",
                step: float = 0.1, steps: int = 25, eps: float | None = None, theta: float = 1.0,
                gamma: float = 0.25) -> TargetGrid:
    """Attack every row towards every class on every model, in one batch per model."""
    if attack not in GRID_ATTACKS:
        raise ValueError(f"unknown grid attack {attack!r}; choose from {', '.join(GRID_ATTACKS)}")
    inputs, target = _all_targets(x)
    rows, shape = len(x), x.shape[-2:]
    images, target_prob, predicted = {}, {}, {}
    for name, model in models.items():
        if attack == "itgsm":
            path, probs = itgsm_path(model, inputs, target, step, steps, eps)
        else:
            path = torch.stack([inputs, jsma(model, inputs, target, theta, gamma).images])
            probs = _probabilities(model, path.flatten(0, 1)).view(len(path), len(inputs), -1)
        prob, pred = _own_view(probs.flatten(0, 1), target.repeat(len(path)))
        images[name] = path.view(len(path), rows, NUM_CLASSES, *shape).cpu()
        target_prob[name] = prob.view(len(path), rows, NUM_CLASSES).cpu()
        predicted[name] = pred.view(len(path), rows, NUM_CLASSES).cpu()
    settings = ({"step": step, "steps": steps, "eps": eps, "projected": eps is not None} if attack == "itgsm"
                else {"theta": theta, "gamma": gamma})
    return TargetGrid(attack, [int(v) for v in labels], images, target_prob, predicted, settings)


def cross_predictions(grid: TargetGrid, models: dict[str, nn.Module], iteration: int) -> dict[str, dict]:
    """For each source model's grid at one iteration, every model's prediction and target probability per cell:
    {source: {evaluator: (predicted [rows, K], p(target) [rows, K])}}."""
    out = {}
    for source in grid.images:
        cells = grid.cells(source, iteration)
        rows = cells.shape[0]
        flat = cells.reshape(rows * NUM_CLASSES, 1, *cells.shape[-2:])
        target = torch.arange(NUM_CLASSES).repeat(rows)
        out[source] = {}
        for name, model in models.items():
            device = next(model.parameters()).device
            prob, pred = _own_view(_probabilities(model, flat.to(device)), target.to(device))
            out[source][name] = (pred.view(rows, NUM_CLASSES).cpu(), prob.view(rows, NUM_CLASSES).cpu())
    return out


def mosaic(cells: torch.Tensor, gap: int = GAP) -> np.ndarray:
    """[rows, targets, H, W] in [0, 1] as one float image with `gap`-pixel mid-grey separators."""
    rows, cols, h, w = cells.shape
    out = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap), 0.5, dtype=np.float32)
    for r in range(rows):
        for c in range(cols):
            out[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = cells[r, c].numpy()
    return out


def provenance(grid: TargetGrid, model: str, iteration: int, cards: dict[str, dict], dataset: str,
               rows_from: str) -> dict:
    """What an exported grid is: the model and its weights, the attack, the iteration and every cell's view."""
    it = min(iteration, grid.iterations)
    return {"dataset": dataset, "model": model, "model_sha256": cards.get(model, {}).get("sha256"),
            "attack": grid.attack, **grid.settings, "iteration": it, "rows": rows_from,
            "row_classes": grid.labels, "column_targets": list(range(NUM_CLASSES)),
            "predicted": grid.predicted[model][it].tolist(),
            "target_probability": [[round(p, 6) for p in row] for row in grid.target_prob[model][it].tolist()],
            "png": f"16-bit grey, pixel value = PNG value / 65535, {GAP}-pixel grey gaps between cells"}
