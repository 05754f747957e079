"""The full source×target matrix: 5 models × {FGSM, TGSM} × 8 ε × N images, timed end to end.

Uses freshly initialised PaperCNNs (the cost does not depend on the weights) so it runs without a zoo.
The baseline, measured in the same run, is one fp32 forward pass of one model over the N images in the
default (channels-first) weight layout, i.e. what a plain PyTorch loop would pay per forward.
Usage: python -m benchmarks.eval_matrix [--n 10000] [--device cpu]
"""
from __future__ import annotations

import argparse
import time

import torch

from gradviz.evaluation.runs.matrix import EvalConfig, _attack_block, correct_counts
from gradviz.nets.architecture import ZOO_WIDTH, PaperCNN, channels_last

EPS = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--models", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    args = parser.parse_args()
    torch.manual_seed(0)
    models = {f"m{i}": channels_last(PaperCNN(width=ZOO_WIDTH).to(args.device).eval()) for i in range(args.models)}
    for m in models.values():
        for p in m.parameters():
            p.requires_grad_(False)
    x = torch.rand(args.n, 1, 28, 28, device=args.device)
    y = torch.randint(0, 10, (args.n,), device=args.device)
    config = EvalConfig(models=list(models), attacks=["fgsm", "tgsm"], eps=EPS, n=args.n, device=args.device,
                        batch_size=args.batch_size, precision=args.precision)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    plain = PaperCNN(width=ZOO_WIDTH).to(args.device).eval()
    plain_forward = lambda: [plain(x[i:i + args.batch_size]) for i in range(0, args.n, args.batch_size)]  # noqa: E731
    with torch.no_grad():
        plain_forward()  # warm-up
        sync()
        start = time.perf_counter()
        plain_forward()
    sync()
    forward = time.perf_counter() - start
    start = time.perf_counter()
    clean = {t: correct_counts(m, x, y, args.batch_size) for t, m in models.items()}
    rows = [r for s in models for a in config.entries()
            for r in _attack_block(config, s, models, x, y, a, clean, config.eps_for(a))]
    sync()
    total = time.perf_counter() - start
    print(f"matrix {args.models} models × 2 attacks × {len(EPS)} ε × {args.n} images on {args.device} "
          f"({torch.get_num_threads()} threads, {args.precision}): {total:.1f} s, {len(rows)} rows")
    print(f"  one forward pass over {args.n} images: {forward * 1000:.0f} ms; matrix = {total / forward:.0f}x that")


if __name__ == "__main__":
    main()
