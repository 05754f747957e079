"""`gradviz evaluate`: the source × target robustness matrix, as CSV, JSON and an HTML report."""
from __future__ import annotations

import sys
from pathlib import Path

from gradviz.attacks.registry import attack_names, parse_attack_params
from gradviz.cli.common import PARAM_HELP, Help, iterative_attacks
from gradviz.data.datasets import dataset_names


def add_parser(sub) -> None:
    e = sub.add_parser("evaluate", help="source×target robustness matrix, CSV + JSON + HTML report",
                       formatter_class=Help)
    e.add_argument("--dataset", choices=dataset_names(), default="mnist")
    e.add_argument("--models", default="", help="comma-separated model names (default: the dataset's zoo)")
    e.add_argument("--attacks", default="fgsm,tgsm", help=f"any of {','.join(attack_names())}")
    e.add_argument("--param", action="append", metavar="ATTACK.SETTING=VALUE", help=PARAM_HELP)
    e.add_argument("--iterative-n", type=int, default=None,
                   help=f"run the iterative ε-attacks ({','.join(iterative_attacks())}) on the first N of the --n "
                        "images only (default: all of them)")
    e.add_argument("--l0-n", type=int, default=1000, dest="l0_n",
                   help=f"pixel-budget attacks ({','.join(attack_names(eps_bounded=False))}: no ε; success rate and "
                        "pixels changed) on the first N of the --n images")
    e.add_argument("--eps", default="0,0.1,0.2,0.3,0.4,0.5,0.6,0.7")
    e.add_argument("--iterative-eps", default=None,
                   help="ε grid for the iterative ε-attacks only (default: --eps); each of their ε costs 10-20 "
                        "gradient steps")
    e.add_argument("--n", type=int, default=1000, help="first n test images")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--target", default="next", help="TGSM target: next, least-likely, random or a class")
    e.add_argument("--device", default=None)
    e.add_argument("--batch-size", type=int, default=1000)
    e.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="bf16: faster accuracy counting under autocast (attack gradients stay fp32)")
    e.add_argument("--heatmap-eps", type=float, default=0.3)
    e.add_argument("--no-report", action="store_true", help="skip the HTML report")
    e.add_argument("--finished-only", action="store_true",
                   help="compute nothing: write the results of the blocks already in OUT/cache (a long run's "
                        "progress so far, even while it runs) and list the missing ones")
    e.add_argument("--out", required=True)


def run(args) -> int:
    from gradviz.evaluation.report.html import write_report
    from gradviz.evaluation.runs.matrix import EvalConfig, evaluate, evaluation_summary, write_results

    config = EvalConfig(dataset=args.dataset, models=[m for m in args.models.split(",") if m],
                        attacks=args.attacks.split(","), eps=[float(e) for e in args.eps.split(",")], n=args.n,
                        seed=args.seed, target_mode=args.target, batch_size=args.batch_size,
                        precision=args.precision, l0_n=args.l0_n, iterative_n=args.iterative_n,
                        iterative_eps=[float(e) for e in args.iterative_eps.split(",")] if args.iterative_eps else None,
                        attack_params=parse_attack_params(args.param))
    if args.device:
        config.device = args.device
    result = evaluate(config, cache_dir=Path(args.out) / "cache", finished_only=args.finished_only)
    if result.provenance.get("blocks_missing"):
        missing = result.provenance["blocks_missing"]
        print(f"{len(missing)} block(s) not computed yet (--finished-only), the first: {'; '.join(missing[:3])}",
              file=sys.stderr)
    write_results(result, args.out)
    if not args.no_report:
        write_report(result, args.out, heatmap_eps=args.heatmap_eps)
    print(evaluation_summary(result))
    print(f"{result.provenance['seconds']:.1f} s on {result.provenance['device']}; results in {args.out}")
    return 0
