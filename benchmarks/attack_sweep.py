"""ε-sweep of FGSM: one gradient reused for 8 ε, against 1 ε and against captum.robust.FGSM once per ε.

Usage: python -m benchmarks.attack_sweep [--n 1000] [--repeats 10] [--device cpu]
"""
from __future__ import annotations

import argparse

import torch
from captum.robust import FGSM

from benchmarks.common import compare, report
from gradviz.attacks.linf import single_step_sweep
from gradviz.nets.architecture import ZOO_WIDTH, PaperCNN

EPS = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]


def logit_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-example CE on logits; captum.robust's default loss assumes probabilities, ours are logits."""
    return torch.nn.functional.cross_entropy(logits, labels, reduction="none")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = PaperCNN(width=ZOO_WIDTH).to(args.device).eval()
    x = torch.rand(args.n, 1, 28, 28, device=args.device)
    y = torch.randint(0, 10, (args.n,), device=args.device)
    captum = FGSM(model, loss_func=logit_cross_entropy, lower_bound=0.0, upper_bound=1.0)
    medians = compare({
        "gradviz sweep, 1 ε": lambda: single_step_sweep(model, x, y, [0.3]),
        "gradviz sweep, 8 ε": lambda: single_step_sweep(model, x, y, EPS),
        "captum.robust.FGSM once per ε, 8 ε": lambda: [captum.perturb(x, epsilon=e, target=y) for e in EPS],
    }, args.device, args.repeats)
    report(medians, "gradviz sweep, 1 ε", f"FGSM on {args.n} images, device {args.device}, "
                                          f"{torch.get_num_threads()} threads")
    speedup = medians["captum.robust.FGSM once per ε, 8 ε"] / medians["gradviz sweep, 8 ε"]
    print(f"  speed-up of the sweep over captum per ε: {speedup:.2f}x")


if __name__ == "__main__":
    main()
