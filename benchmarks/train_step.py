"""Cost of one gradreg training step (exact and finite-difference) relative to a normal step, in the default
weight layout and channels-last (which training uses on CPU for every defense), each with plain autograd and with
the opt-in fast path (gradviz.training.fast_penalty), all measured in the same run.

Usage: python -m benchmarks.train_step [--batch-size 128] [--repeats 30] [--device cpu] [--layers zoo|reference]
(the paper-scale runs: --layers reference --width 1024 --batch-size 256)
"""
from __future__ import annotations

import argparse

import torch

from benchmarks.common import compare, report, training_step
from gradviz.machine import cpu_name
from gradviz.nets.architecture import LAYER_STYLES, ZOO_WIDTH, PaperCNN, channels_last
from gradviz.training.defenses import LossSettings

VARIANTS = {
    "normal": LossSettings("normal"),
    "gradreg exact": LossSettings("gradreg", lam=10.0, penalty="exact"),
    "gradreg finite-difference": LossSettings("gradreg", lam=10.0, penalty="finite-difference"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--width", type=int, default=ZOO_WIDTH)
    parser.add_argument("--layers", choices=LAYER_STYLES, default="zoo")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    x = torch.rand(args.batch_size, 1, 28, 28, device=args.device)
    y = torch.randint(0, 10, (args.batch_size,), device=args.device)

    def step(settings: LossSettings, layout: bool, fast: bool):
        model = PaperCNN(width=args.width, layers=args.layers).to(args.device).train()
        return training_step(channels_last(model) if layout else model, x, y, settings, fast=fast)

    variants = {}
    for layout, suffix in ((False, ""), (True, ", channels-last")):
        variants[f"normal{suffix}"] = step(VARIANTS["normal"], layout, False)
        for name in ("gradreg exact", "gradreg finite-difference"):
            variants[f"{name}, plain autograd{suffix}"] = step(VARIANTS[name], layout, False)
            variants[f"{name}, fast path{suffix}"] = step(VARIANTS[name], layout, True)
    medians = compare(variants, args.device, args.repeats)
    header = (f"training step, device {args.device} ({cpu_name()}), {torch.get_num_threads()} threads, "
              f"batch {args.batch_size}, width {args.width}, {args.layers} layers")
    report(medians, "normal", header)
    print("as training runs (channels-last), each against the normal step:")
    for name in ("gradreg exact", "gradreg finite-difference"):
        plain, fast = (medians[f"{name}, {how}, channels-last"] / medians["normal, channels-last"]
                       for how in ("plain autograd", "fast path"))
        print(f"  {name:28} fast path {fast:5.2f}x   plain autograd {plain:5.2f}x")


if __name__ == "__main__":
    main()
