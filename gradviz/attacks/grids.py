"""The paper's target grids: a digit of every class (rows) pushed towards every class (columns), per model.

Any registered attack makes a grid. A targeted one has ten columns, one per target class; an untargeted one
has a single column. Iterative L∞ attacks keep every iteration, so a viewer can scrub through them without
recomputing: one batched computation per model, all rows × targets at once. Other attacks (single steps,
JSMA) keep the original and the final images.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from gradviz.attacks.registry import Attack, get_attack
from gradviz.nets.architecture import class_count

PAPER_ITERATION = 10  # the iteration the paper's MNIST grids show ("just enough to fully whiten or darken a patch")
GAP = 2  # pixels between cells of an exported grid
# Grid settings that differ from an attack's registry defaults: the paper's MNIST grids are iterated TGSM with
# step 0.1 and no ε-ball (ε = 1 contains every image), 25 iterations kept.
PAPER_GRID_ATTACK = "itgsm"
GRID_PRESETS: dict[str, dict] = {PAPER_GRID_ATTACK: {"eps": 1.0, "steps": 25, "step_scale": 0.1}}
DEFAULT_GRID_EPS = 0.3
GridProgress = Callable[[int, int, str], None]  # (done, total, what)


def grid_settings(entry: Attack, eps: float | None = None, params: Mapping | None = None) -> tuple[float | None, dict]:
    """ε and settings of a grid: the registry's defaults, then the grid presets, then what was given."""
    preset = dict(GRID_PRESETS.get(entry.name, {}))
    preset_eps = preset.pop("eps", DEFAULT_GRID_EPS)
    settings = entry.settings({**preset, **(params or {})})
    return entry.check_eps(preset_eps if eps is None else eps), settings


@dataclass
class TargetGrid:
    """Adversarial images of `rows` (true classes `labels`) towards every class, for each model.

    images[model]: [iterations + 1, rows, columns, H, W] (iteration 0 is the original); columns are the target
    classes `targets`, or one untargeted column (targets == [None]).
    target_prob / predicted[model]: the model's own view of every cell at every iteration; target_prob is
    p(goal), the goal being the column's target, or the true class for an untargeted attack.
    """

    attack: str
    labels: list[int]
    targets: list[int | None]
    images: dict[str, torch.Tensor]
    target_prob: dict[str, torch.Tensor]
    predicted: dict[str, torch.Tensor]
    settings: dict = field(default_factory=dict)

    @property
    def iterations(self) -> int:
        return next(iter(self.images.values())).shape[0] - 1

    @property
    def targeted(self) -> bool:
        return self.targets != [None]

    def cells(self, model: str, iteration: int) -> torch.Tensor:
        """[rows, columns, H, W] (grey) or [rows, columns, C, H, W] (colour) images of one model at one iteration
        (clamped to the last one computed)."""
        return self.images[model][min(iteration, self.iterations)]

    def goals(self) -> torch.Tensor:
        """[rows, columns]: the class each cell aims at (target) or, untargeted, aims away from (truth)."""
        if self.targeted:
            return torch.tensor(self.targets).repeat(len(self.labels), 1)
        return torch.tensor(self.labels).view(-1, 1)

    def counted(self) -> torch.Tensor:
        """[rows, columns] bool: the cells an attack can succeed on (a targeted grid's off-diagonal)."""
        if self.targeted:
            return torch.tensor([[t != true for t in self.targets] for true in self.labels])
        return torch.ones(len(self.labels), 1, dtype=torch.bool)

    def succeeded(self, predicted: torch.Tensor) -> torch.Tensor:
        """[rows, columns] bool: predicting the target (targeted) or anything but the truth (untargeted)."""
        hit = predicted == self.goals()
        return hit if self.targeted else ~hit

    def success_share(self, predicted: torch.Tensor) -> float:
        """Share of the counted cells where `predicted` [rows, columns] means the attack succeeded."""
        return float(self.succeeded(predicted)[self.counted()].float().mean())


def first_of_each_class(x: torch.Tensor, y: torch.Tensor, per_class: int = 1,
                        classes: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `per_class` images of each of `classes` classes, class by class (the paper's rows)."""
    picks = [int(i) for c in range(classes) for i in (y == c).nonzero().flatten()[:per_class]]
    if len(picks) < classes * per_class:
        raise ValueError(f"the sample has fewer than {per_class} image(s) of some class")
    index = torch.tensor(picks)
    return x[index], y[index]


def _grid_inputs(x: torch.Tensor, labels: torch.Tensor, targeted: bool,
                 classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Targeted: each image once per class, with those classes as targets ([rows·K, …], [rows·K]);
    untargeted: the images with their true classes."""
    if not targeted:
        return x, labels.to(x.device)
    return x.repeat_interleave(classes, 0), torch.arange(classes, device=x.device).repeat(len(x))


def _own_view(probs: torch.Tensor, goal: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """p(goal) and the predicted class from class probabilities [N, K]."""
    return probs.gather(1, goal.view(-1, 1)).flatten(), probs.argmax(1)


def _probabilities(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.softmax(model(images), 1)


def attack_path(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, entry: Attack, eps: float | None = None,
                seed: int = 0, progress=None, **params) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image an attack passes through, [steps + 1, N, …] (just the original and the result for an attack
    without steps), and the model's probabilities [steps + 1, N, K] of each: a step's own forward pass gives
    them, so a path costs one gradient per iteration plus one forward pass."""
    path, probs = [x.detach()], []
    for logits, adv in entry.path(model, x, labels, eps, seed, progress, **params):
        path.append(adv)
        probs.append(torch.softmax(logits, 1))
    probs.append(_probabilities(model, path[-1]))
    return torch.stack(path), torch.stack(probs)


def target_grid(models: dict[str, nn.Module], x: torch.Tensor, labels: torch.Tensor, attack: str = PAPER_GRID_ATTACK,
                eps: float | None = None, params: Mapping | None = None, seed: int = 0,
                progress: GridProgress | None = None) -> TargetGrid:
    """Attack every row towards every class (or, untargeted, just attack it) on every model, one batch a model.
    `progress(done, total, model)` hears how far the attack on each model has got (JSMA: examples finished)."""
    entry = get_attack(attack)
    eps, settings = grid_settings(entry, eps, params)
    classes = class_count(next(iter(models.values())), x)
    inputs, aims = _grid_inputs(x, labels, entry.targeted, classes)
    rows, cols = len(x), classes if entry.targeted else 1
    shape = x.shape[-2:] if x.shape[1] == 1 else x.shape[1:]  # a grey cell is [H, W], a colour one [C, H, W]
    images, target_prob, predicted = {}, {}, {}
    for k, (name, model) in enumerate(models.items()):
        def report(done: int, total: int, k=k, name=name) -> None:
            if progress is not None:
                progress(k * total + done, len(models) * total, name)

        path, probs = attack_path(model, inputs, aims, entry, eps, seed, report, **settings)
        prob, pred = _own_view(probs.flatten(0, 1), aims.repeat(len(path)))  # aims are the goals
        images[name] = path.view(len(path), rows, cols, *shape).cpu()
        target_prob[name] = prob.view(len(path), rows, cols).cpu()
        predicted[name] = pred.view(len(path), rows, cols).cpu()
    targets = list(range(classes)) if entry.targeted else [None]
    return TargetGrid(attack, [int(v) for v in labels], targets, images, target_prob, predicted,
                      {"eps": eps, **settings, "seed": seed})


def cross_predictions(grid: TargetGrid, models: dict[str, nn.Module], iteration: int) -> dict[str, dict]:
    """For each source model's grid at one iteration, every model's prediction and target probability per cell:
    {source: {evaluator: (predicted [rows, K], p(target) [rows, K])}}."""
    out = {}
    goals = grid.goals()
    for source in grid.images:
        cells = grid.cells(source, iteration)
        rows, cols = cells.shape[:2]
        flat = cells.reshape(rows * cols, *(cells.shape[2:] if cells.dim() == 5 else (1, *cells.shape[2:])))
        goal = goals.expand(rows, cols).flatten()
        out[source] = {}
        for name, model in models.items():
            device = next(model.parameters()).device
            prob, pred = _own_view(_probabilities(model, flat.to(device)), goal.to(device))
            out[source][name] = (pred.view(rows, cols).cpu(), prob.view(rows, cols).cpu())
    return out


def mosaic(cells: torch.Tensor, gap: int = GAP) -> np.ndarray:
    """[rows, targets, H, W] (or [rows, targets, C, H, W]) in [0, 1] as one float image, [H', W'] (or [H', W', C]),
    with `gap`-pixel mid-grey separators."""
    if cells.dim() == 5:
        cells = cells.permute(0, 1, 3, 4, 2)  # channels last, as an RGB image is laid out
    rows, cols, h, w = cells.shape[:4]
    out = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap, *cells.shape[4:]), 0.5, dtype=np.float32)
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
            "row_classes": grid.labels, "column_targets": grid.targets if grid.targeted else ["untargeted"],
            "predicted": grid.predicted[model][it].tolist(),
            "target_probability": [[round(p, 6) for p in row] for row in grid.target_prob[model][it].tolist()],
            "png": (f"16-bit grey, pixel value = PNG value / 65535, {GAP}-pixel grey gaps between cells"
                    if grid.images[model].dim() == 5 else
                    f"8-bit RGB, pixel value = PNG value / 255, {GAP}-pixel grey gaps between cells")}
