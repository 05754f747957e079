"""Our metric registry against plain Quantus on the same model, images, maps and settings, in one run.

Every metric of ours that Quantus also has is timed both ways (median of interleaved repeats); the ratio is
Quantus's time over ours, so above 1 means ours is faster. Quantus gets the batch whole (batch_size = n) and a
per-image normalisation, so both compute the same numbers (tests/attribution/test_metrics.py checks they agree).

    python -m benchmarks.metrics --n 200 --repeats 3
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from benchmarks.common import compare
from gradviz.attribution.methods import get_method
from gradviz.attribution.metrics import Evidence, get_metric, ink_mask
from gradviz.data.datasets import load_dataset
from gradviz.machine import device_description
from gradviz.nets.architecture import channels_last, frozen
from gradviz.nets.store import load_model


def per_image_max(a: np.ndarray, **kwargs) -> np.ndarray:
    scale = np.abs(a).reshape(len(a), -1).max(1).reshape(-1, *[1] * (a.ndim - 1))
    return np.where(scale > 0, a / np.where(scale > 0, scale, 1), a)


def main() -> None:
    import quantus

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="mnist-normal")
    args = parser.parse_args()
    model = frozen(channels_last(load_model(args.model)[0]))
    x, y = load_dataset("mnist", "test")
    x, y = x[:args.n], y[:args.n]
    method = get_method("gradient-logp")
    maps = method.attribute(model, x, y)

    def explain(m, xs, ys, cls):
        return method.attribute(m, xs, ys, cls)

    def quantus_explain(model, inputs, targets, **kwargs):  # Quantus passes these by keyword
        xs = torch.as_tensor(np.asarray(inputs), dtype=torch.float32)
        ys = torch.as_tensor(np.asarray(targets)).long()
        return explain(model, xs, ys, ys).unsqueeze(1).numpy()

    mask = ink_mask(x)
    common = dict(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=maps.unsqueeze(1).numpy(),
                  device="cpu", batch_size=args.n)
    s_batch = mask.unsqueeze(1).numpy().astype(np.float32)
    q = dict(normalise_func=per_image_max, disable_warnings=True)

    def ours(name: str, **settings):
        return lambda: get_metric(name)(Evidence(model, x, y, maps, explain, mask), **settings)

    pairs = {
        "deletion (16 steps)": (ours("deletion"), lambda: quantus.PixelFlipping(
            features_in_step=49, abs=True, **q)(**common, softmax=True)),
        "road (9 levels)": (ours("road"), lambda: quantus.ROAD(percentages=list(range(10, 100, 10)), abs=True,
                                                              **q)(**common)),
        "max-sensitivity (5 samples)": (ours("max-sensitivity"), lambda: quantus.MaxSensitivity(
            nr_samples=5, lower_bound=0.05, **q)(**common, explain_func=quantus_explain)),
        "local-lipschitz (5 samples)": (ours("local-lipschitz"), lambda: quantus.LocalLipschitzEstimate(
            nr_samples=5, **q)(**common, explain_func=quantus_explain)),
        "sparseness": (ours("sparseness"), lambda: quantus.Sparseness(**q)(**common)),
        "entropy": (ours("entropy"), lambda: quantus.Complexity(**q)(**common)),
        "mprt-cascading": (ours("mprt-cascading"), lambda: quantus.MPRT(
            return_average_correlation=True, **q)(**common, explain_func=quantus_explain)),
        "random-logit": (ours("random-logit"), lambda: quantus.RandomLogit(num_classes=10, **q)(
            **common, explain_func=quantus_explain)),
        "relevance-mass": (ours("relevance-mass"), lambda: quantus.RelevanceMassAccuracy(abs=True, **q)(
            **common, s_batch=s_batch)),
        "relevance-rank": (ours("relevance-rank"), lambda: quantus.RelevanceRankAccuracy(abs=True, **q)(
            **common, s_batch=s_batch)),
        "pointing-game": (ours("pointing-game"), lambda: quantus.PointingGame(abs=True, **q)(
            **common, s_batch=s_batch)),
    }
    started = time.perf_counter()
    print(f"Metrics on {args.n} MNIST test digits, {args.model}, input-gradient maps, "
          f"{device_description('cpu')}, torch {torch.__version__}, quantus {quantus.__version__}")
    print(f"  {'metric':30} {'gradviz':>10} {'quantus':>10}   quantus / gradviz")
    for name, (mine, theirs) in pairs.items():
        medians = compare({"gradviz": mine, "quantus": theirs}, "cpu", args.repeats, warmup=1)
        print(f"  {name:30} {1000 * medians['gradviz']:8.1f}ms {1000 * medians['quantus']:8.1f}ms   "
              f"{medians['quantus'] / medians['gradviz']:6.2f}x")
    print(f"{time.perf_counter() - started:.0f} s in all. MPRT: Quantus randomises each module with parameters "
          "(7 here: batch norms alone too), ours each layer with its batch norm (4).")


if __name__ == "__main__":
    main()
