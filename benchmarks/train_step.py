"""Cost of one gradreg training step (exact and finite-difference) relative to a normal step, in the
default weight layout and channels-last (which training uses on CPU for every defense), and the exact step with
PyTorch's own layer derivatives (no `explicit_input_gradients`) for comparison.

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
from gradviz.training.penalties import cross_entropy_losses, exact_penalty

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

    def step(settings: LossSettings, fast_layout: bool = False):
        model = PaperCNN(width=args.width, layers=args.layers).to(args.device).train()
        return training_step(channels_last(model) if fast_layout else model, x, y, settings)

    def builtin_exact():  # the same loss with PyTorch's own layer derivatives, channels-last (before double_backward.py)
        model = channels_last(PaperCNN(width=args.width, layers=args.layers).to(args.device).train())
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

        def run() -> None:
            xg = x.detach().requires_grad_(True)
            logits = model(xg)
            penalty = exact_penalty(xg, cross_entropy_losses(logits, y))
            loss = torch.nn.functional.cross_entropy(logits, y) + 10.0 * penalty
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return run

    variants = {k: step(s) for k, s in VARIANTS.items()}
    variants["gradreg exact, PyTorch's own derivatives, channels-last"] = builtin_exact()
    variants.update({f"{k}, channels-last": step(s, fast_layout=True) for k, s in VARIANTS.items()})
    medians = compare(variants, args.device, args.repeats)
    header = (f"training step, device {args.device} ({cpu_name()}), {torch.get_num_threads()} threads, "
              f"batch {args.batch_size}, width {args.width}, {args.layers} layers")
    report(medians, "normal", header)
    print("as training runs (channels-last):")
    for name in ("gradreg exact, channels-last", "gradreg finite-difference, channels-last"):
        print(f"  {name:44} {medians[name] / medians['normal, channels-last']:6.2f}x normal, channels-last")


if __name__ == "__main__":
    main()
