"""Cost of one gradreg training step (exact and finite-difference) relative to a normal step.

Measured in one run, interleaved, so machine noise hits all variants alike. Not a test: prints ratios.
Usage: python -m benchmarks.train_step [--batch-size 128] [--repeats 30] [--device cpu]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from gradviz.architecture import ZOO_WIDTH, PaperCNN
from gradviz.defenses import LossSettings, batch_loss

VARIANTS = {
    "normal": LossSettings("normal"),
    "gradreg exact": LossSettings("gradreg", lam=10.0, penalty="exact"),
    "gradreg finite-difference": LossSettings("gradreg", lam=10.0, penalty="finite-difference"),
}


def step_time(model, optimizer, x, y, settings: LossSettings) -> float:
    start = time.perf_counter()
    loss, _ = batch_loss(model, x, y, settings)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--width", type=int, default=ZOO_WIDTH)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = PaperCNN(width=args.width).to(args.device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.rand(args.batch_size, 1, 28, 28, device=args.device)
    y = torch.randint(0, 10, (args.batch_size,), device=args.device)
    times: dict[str, list[float]] = {k: [] for k in VARIANTS}
    for _ in range(3):  # warm-up
        for s in VARIANTS.values():
            step_time(model, optimizer, x, y, s)
    for _ in range(args.repeats):
        for name, s in VARIANTS.items():
            times[name].append(step_time(model, optimizer, x, y, s))
    base = statistics.median(times["normal"])
    print(f"device {args.device}, threads {torch.get_num_threads()}, batch {args.batch_size}, width {args.width}")
    for name, t in times.items():
        print(f"{name:28} median {1000 * statistics.median(t):7.1f} ms   ratio {statistics.median(t) / base:5.2f}x")


if __name__ == "__main__":
    main()
