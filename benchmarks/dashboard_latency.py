"""What one slider move costs on the Saliency/Attack pages: saliency + FGSM + predictions of one image on 4 models.

The baseline, measured in the same run, is one forward pass of one model on the image.
Usage: python -m benchmarks.dashboard_latency [--repeats 30] [--device cpu]
"""
from __future__ import annotations

import argparse

import torch

from benchmarks.common import compare, frozen_models, report
from gradviz.attacks.registry import get_attack
from gradviz.attribution.methods import explain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    models = frozen_models(4, args.device)
    x = torch.rand(1, 1, 28, 28, device=args.device)

    def slider_move():
        adv = get_attack("fgsm").generate(models["m0"], x, torch.tensor([3], device=x.device), 0.3)
        explain(models, adv, 3, "gradient-ce")

    with torch.no_grad():
        forward = lambda: models["m0"](x)  # noqa: E731
        medians = compare({"one forward pass": forward}, args.device, args.repeats)
    medians.update(compare({
        "saliency of 4 models (+ predictions)": lambda: explain(models, x, 3, "gradient-ce"),
        "FGSM + saliency + predictions, 4 models": slider_move,
        "integrated gradients, 4 models": lambda: explain(models, x, 3, "integrated-gradients"),
    }, args.device, args.repeats))
    report(medians, "one forward pass", f"one image, device {args.device}, {torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()
