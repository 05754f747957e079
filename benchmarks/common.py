"""Timing helpers shared by the benchmarks: interleaved repeats, medians, device sync."""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def timed(fn: Callable[[], object], device: str) -> float:
    start = time.perf_counter()
    fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def compare(variants: dict[str, Callable[[], object]], device: str, repeats: int, warmup: int = 2) -> dict[str, float]:
    """Median seconds of each variant, run interleaved so machine noise hits all alike."""
    for _ in range(warmup):
        for fn in variants.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            times[name].append(timed(fn, device))
    return {k: statistics.median(v) for k, v in times.items()}


def report(medians: dict[str, float], baseline: str, header: str) -> None:
    print(header)
    base = medians[baseline]
    for name, t in medians.items():
        print(f"  {name:44} {1000 * t:9.1f} ms   {t / base:6.2f}x {baseline}")


def frozen_models(count: int, device: str) -> dict[str, torch.nn.Module]:
    """`count` randomly initialised zoo-sized models, in eval mode with frozen weights, as the dashboard holds them."""
    from gradviz.nets.architecture import ZOO_WIDTH, PaperCNN

    torch.manual_seed(0)
    models = {f"m{i}": PaperCNN(width=ZOO_WIDTH).to(device).eval() for i in range(count)}
    for model in models.values():
        for p in model.parameters():
            p.requires_grad_(False)
    return models


def corner_masks(x: torch.Tensor, size: int = 4) -> torch.Tensor:
    """A Decoy-MNIST-like annotation for timing a masked defense: the top-left size×size corner of every image."""
    masks = torch.zeros_like(x, dtype=torch.bool)
    masks[..., :size, :size] = True
    return masks


def training_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, settings,
                  fast: bool = False) -> Callable[[], None]:
    """One Adam step of `model` on the batch under a defense's LossSettings, as a callable to time (a masked
    defense gets corner masks: its cost does not depend on where the mask is); `fast` opts in to the penalty's
    fast path (gradviz.training.fast_penalty), as `gradviz train --fast-penalty` and the recipes do."""
    from gradviz.training.defenses import MASKED, batch_loss
    from gradviz.training.fast_penalty import fast_penalty_for

    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    masks = corner_masks(x) if settings.defense in MASKED else None
    fast_path = fast_penalty_for(model, say=print) if fast else None

    def run() -> None:
        loss, _ = batch_loss(model, x, y, settings, mask=masks, fast=fast_path)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return run
