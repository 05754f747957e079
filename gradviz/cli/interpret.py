"""`python -m gradviz interpret`: explanation quality of models × saliency methods × metrics, as a tidy CSV,
a summary with 95% intervals, provenance JSON and an HTML report; cached and resumable like `evaluate`."""
from __future__ import annotations

import argparse
from pathlib import Path

from gradviz.attribution.methods import DEFAULT_METHODS
from gradviz.attribution.methods import REGISTRY as METHODS
from gradviz.attribution.metrics import REGISTRY as METRICS
from gradviz.data.datasets import dataset_names
from gradviz.params import parse_settings


def _names(text: str, known: dict, what: str) -> list[str]:
    names = [n for n in (part.strip() for part in text.split(",")) if n]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown {what} {', '.join(unknown)}; choose from {', '.join(known)}")
    return names


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("interpret", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       help="explanation quality: models × saliency methods × metrics, CSV + JSON + HTML report")
    p.add_argument("--dataset", choices=dataset_names(), default="mnist")
    p.add_argument("--models", default="", help="comma-separated model names (default: the dataset's zoo)")
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS), help=f"any of {','.join(METHODS)}")
    p.add_argument("--metrics", default="all", help=f"'all' or any of {','.join(METRICS)}")
    p.add_argument("--n", type=int, default=1000, help="first n test images")
    p.add_argument("--param", action="append", metavar="NAME.SETTING=VALUE",
                   help="a method's or metric's setting, repeatable, e.g. integrated-gradients.n_steps=8 or "
                        "max-sensitivity.samples=10")
    p.add_argument("--ink-threshold", type=float, default=0.25,
                   help="the localisation metrics' object mask where a dataset has no ground truth: pixels "
                        "brighter than this")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--device", default=None)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--no-report", action="store_true", help="skip the HTML report")
    p.add_argument("--out", required=True)
    return p


def run(args) -> int:
    from gradviz.evaluation.report.interpretation import write_interpretation_report
    from gradviz.evaluation.runs.interpretation import InterpretConfig, interpret, write_interpretation

    methods = _names(args.methods, METHODS, "saliency method")
    metrics = list(METRICS) if args.metrics.strip() == "all" else _names(args.metrics, METRICS, "metric")
    given = parse_settings(args.param, "--param", example="integrated-gradients.n_steps=8")
    stray = sorted(set(given) - set(methods) - set(metrics))
    if stray:
        raise ValueError(f"--param names {', '.join(stray)}, which is neither a chosen method nor a chosen metric")
    if not 0 <= args.ink_threshold < 1:
        raise ValueError(f"--ink-threshold must lie in [0, 1); got {args.ink_threshold}")
    config = InterpretConfig(dataset=args.dataset, models=[m for m in args.models.split(",") if m],
                             methods=methods, metrics=metrics, n=args.n, seed=args.seed, batch_size=args.batch_size,
                             ink_threshold=args.ink_threshold, data_dir=args.data_dir,
                             method_params={k: v for k, v in given.items() if k in methods},
                             metric_params={k: v for k, v in given.items() if k in metrics})
    if args.device:
        config.device = args.device
    result = interpret(config, cache_dir=Path(args.out) / "cache")
    write_interpretation(result, args.out)
    if not args.no_report:
        write_interpretation_report(result, args.out)
    table = result.summary.pivot_table(index=["model", "method"], columns="metric", values="mean", sort=False)
    print(table.round(3).to_string())
    print(f"{result.provenance['seconds']:.1f} s on {result.provenance['device']}; results in {args.out}")
    return 0
