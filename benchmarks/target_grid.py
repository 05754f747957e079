"""What the Target grids page costs: a 10×10 grid for 4 models, all 25 iterated-TGSM iterations kept, plus a redraw.

The baseline, measured in the same run, is one batched forward-and-backward pass of the same 4 × 100 images
(each model its own 100): a grid is about 25 of those, so ~25× is the floor.
Usage: python -m benchmarks.target_grid [--repeats 5] [--device cpu] [--jsma]
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from benchmarks.common import compare, frozen_models, report
from gradviz.attacks.grids import cross_predictions, mosaic, target_grid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--jsma", action="store_true", help="also time a JSMA grid (θ = 1, γ = 0.25)")
    args = parser.parse_args()
    models = frozen_models(4, args.device)
    x, y = torch.rand(10, 1, 28, 28, device=args.device), torch.arange(10)
    cells = x.repeat_interleave(10, 0)
    targets = torch.arange(10, device=args.device).repeat(10)

    def forward_backward():
        for m in models.values():
            z = cells.detach().requires_grad_(True)
            torch.autograd.grad(F.cross_entropy(m(z), targets), z)

    grid = target_grid(models, x, y)

    def scrub():  # what moving the iteration slider does: mosaics and every model's view of one iteration
        cross_predictions(grid, models, 12)
        [mosaic(grid.cells(n, 12)) for n in models]

    variants = {"forward+backward, 4 × 100 images": forward_backward,
                "grid: 4 models × 10×10 × 25 iterations": lambda: target_grid(models, x, y),
                "scrub: redraw one iteration (cached grid)": scrub}
    if args.jsma:
        variants["JSMA grid: 4 models × 10×10"] = lambda: target_grid(models, x, y, attack="jsma")
    medians = compare(variants, args.device, args.repeats, warmup=1)
    report(medians, "forward+backward, 4 × 100 images",
           f"target grids, device {args.device}, {torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()
