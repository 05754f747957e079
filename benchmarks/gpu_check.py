"""The device check: what the dashboard, training and evaluation cost on one device, as a markdown table.

Times, on the real zoo and the official MNIST test digits: the dashboard's live step (FGSM on one image, then
the saliency maps and predictions of 4 models), one training step of each defense (ratio to a normal step),
every registered attack on the first --attack-n digits, and the full evaluation matrix (every zoo model,
FGSM and TGSM at the paper's 8 ε, the first --n digits). Baselines are measured in the same run. Written for a
GPU (scripts/gpu_check.sh runs it with the device tests); `--device cpu` is its dry run.
Usage: python -m benchmarks.gpu_check [--device cuda] [--n 10000] [--attack-n 10000] [--out gpu_check.md]
"""
from __future__ import annotations

import argparse
import time
from functools import partial
from pathlib import Path

import torch

from benchmarks.common import compare, timed, training_step
from gradviz.attacks.linf import choose_targets
from gradviz.attacks.registry import REGISTRY
from gradviz.attribution.methods import explain
from gradviz.data.datasets import load_dataset
from gradviz.evaluation.runs.matrix import PAPER_EPS, EvalConfig, default_models, evaluate
from gradviz.machine import device_description
from gradviz.nets.architecture import channels_last
from gradviz.nets.store import load_model
from gradviz.training.defenses import ADVERSARIAL, DEFENSES, REGULARIZED, LossSettings

L0_SHARE = 10  # pixel-budget attacks (JSMA: up to 98 Jacobian steps) run on a tenth of --attack-n, scaled up


def dashboard_rows(models: dict, x: torch.Tensor, label: int, device: str, repeats: int) -> list[tuple]:
    """The Attack lab's step on 4 models against its own parts."""
    four = dict(list(models.items())[:4])
    source = next(iter(four.values()))
    aim = torch.tensor([label], device=device)

    def live_step():
        adv = REGISTRY["fgsm"].generate(source, x, aim, 0.3)
        explain(four, adv, label, "gradient-logsum")

    with torch.no_grad():
        medians = compare({"one forward pass": lambda: source(x)}, device, repeats)
    medians.update(compare({"saliency of 4 models": lambda: explain(four, x, label, "gradient-logsum"),
                            "FGSM + saliency + predictions, 4 models": live_step}, device, repeats))
    base = medians["one forward pass"]
    return [("dashboard", name, f"{1000 * t:.1f} ms", f"{t / base:.1f}× one forward pass")
            for name, t in medians.items()]


def training_rows(x: torch.Tensor, y: torch.Tensor, device: str, repeats: int) -> list[tuple]:
    """One optimizer step of each defense on a batch of 128, as the zoo trains them (zoo width, Adam)."""
    from gradviz.nets.architecture import ZOO_WIDTH, PaperCNN

    settings = {d: LossSettings(d, lam=10.0 if d in REGULARIZED else 0.0, eps=0.3,
                                temperature=50.0 if d not in REGULARIZED | ADVERSARIAL | {"normal"} else 1.0)
                for d in DEFENSES}  # distilled: its teacher phase (CE at temperature 50)

    def step(loss_settings: LossSettings):
        torch.manual_seed(0)
        return training_step(PaperCNN(width=ZOO_WIDTH).to(device).train(), x, y, loss_settings)

    medians = compare({d: step(s) for d, s in settings.items()}, device, repeats)
    base = medians["normal"]
    return [("training step (batch 128)", d, f"{1000 * t:.1f} ms", f"{t / base:.2f}× normal")
            for d, t in medians.items()]


def attack_rows(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, device: str) -> list[tuple]:
    """Every registered attack at its defaults (ε = 0.3) on the digits, timed once after a small warm-up."""
    rows = []
    for entry in REGISTRY.values():
        n = len(x) if entry.eps_bounded else max(1, len(x) // L0_SHARE)
        xs, ys = x[:n], y[:n]
        labels = choose_targets(model, xs, ys) if entry.targeted else ys
        eps = 0.3 if entry.eps_bounded else None
        entry.generate(model, xs[:8], labels[:8], eps)
        seconds = sum(timed(partial(entry.generate, model, xs[i:i + 1000], labels[i:i + 1000], eps), device)
                      for i in range(0, n, 1000))
        scaled = seconds * len(x) / n
        note = "" if n == len(x) else f" (measured on {n}, scaled)"
        rows.append(("attack on " + f"{len(x):,} digits", entry.label, f"{scaled:.2f} s{note}",
                     f"{1000 * scaled / len(x):.2f} ms a digit"))
    return rows


def evaluation_rows(device: str, n: int) -> list[tuple]:
    """The full source×target matrix of the committed MNIST zoo, uncached, against its own clean pass."""
    config = EvalConfig(dataset="mnist", attacks=["fgsm", "tgsm"], eps=list(PAPER_EPS), n=n, device=device)
    started = time.perf_counter()
    result = evaluate(config, progress=False)
    seconds = time.perf_counter() - started
    models = len(result.provenance["models"])
    return [("evaluation matrix", f"{models} models × FGSM, TGSM × 8 ε × {n:,} digits", f"{seconds:.1f} s",
             f"{len(result.rows):,} accuracies")]


def markdown(rows: list[tuple], device: str, started: float) -> str:
    lines = [f"Device check on **{device_description(device)}** (torch {torch.__version__}), "
             f"{time.perf_counter() - started:.0f} s in all.", "",
             "| part | what | time | relative |", "|---|---|---|---|"]
    lines += [f"| {' | '.join(str(c) for c in row)} |" for row in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--n", type=int, default=10000, help="digits of the evaluation matrix")
    parser.add_argument("--attack-n", type=int, default=10000, help="digits each attack is timed on")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", default="gpu_check.md")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("no CUDA device here; --device cpu runs the same check on the CPU (a dry run)")
    started = time.perf_counter()
    x, y = load_dataset("mnist", "test")
    x, y = x.to(args.device), y.to(args.device)
    models = {}
    for name in default_models("mnist"):
        model = load_model(name, args.device)[0]
        models[name] = channels_last(model) if args.device == "cpu" else model
    rows = dashboard_rows(models, x[:1], int(y[0]), args.device, args.repeats)
    rows += training_rows(x[:128], y[:128], args.device, max(3, args.repeats // 4))
    rows += attack_rows(models[next(n for n in models if n.endswith("-normal"))], x[:args.attack_n],
                        y[:args.attack_n], args.device)
    rows += evaluation_rows(args.device, args.n)
    table = markdown(rows, args.device, started)
    Path(args.out).write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
