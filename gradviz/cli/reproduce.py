"""`gradviz reproduce`: docs/REPRODUCTION.md from evaluation and interpretation result folders."""
from __future__ import annotations

from pathlib import Path


def add_parser(sub) -> None:
    r = sub.add_parser("reproduce", help="write docs/REPRODUCTION.md from evaluation result folders, or a report on "
                                         "your own normal/regularized pair (--pair)")
    r.add_argument("--pair", default=None, metavar="NORMAL,REGULARIZED",
                   help="report on this pair of any architecture and dataset instead ('does gradreg help my model?'): "
                        "from --evaluation (and --interpretation, if given)")
    r.add_argument("--evaluation", default=None, metavar="FOLDER", help="--pair: result folder of an evaluate run "
                                                                         "holding both models")
    r.add_argument("--mnist", default=None, help="result folder of an mnist evaluate run (required without --pair)")
    r.add_argument("--fashion", default=None, help="result folder of a fashion-mnist evaluate run")
    r.add_argument("--mnist-beyond", action="append", default=[], metavar="FOLDER",
                   help="result folder of stronger transfer attacks (e.g. mifgsm) on the same MNIST models, repeatable")
    r.add_argument("--interpretation", action="append", default=[], metavar="FOLDER",
                   help="result folder of an interpret run (the section 'Interpretability, measured'), repeatable")
    r.add_argument("--ground-truth", action="append", default=[], metavar="FOLDER",
                   help="result folder of an interpret run on decoy-mnist or block-mnist (the section 'Ground "
                        "truth'), repeatable")
    r.add_argument("--paper-scale", default=None, metavar="FOLDER",
                   help="result folder of the evaluate run of mnist-normal-paper and mnist-gradreg-paper (the section "
                        "'The headline at paper scale')")
    r.add_argument("--autoattack", action="append", default=[], metavar="FOLDER",
                   help="result folder of an evaluate run holding autoattack (the section 'Robustness checked with "
                        "AutoAttack'), repeatable")
    r.add_argument("--annotation-curve", action="append", default=[], metavar="FOLDER",
                   help="folder of `zoo curve --write` (the section 'How many annotations does it take?'), repeatable")
    r.add_argument("--preamble", default=None, help="Markdown file with the prose that precedes the tables")
    r.add_argument("--out", default="docs/REPRODUCTION.md")


def run(args) -> int:
    if args.pair:
        return _pair(args)
    if not args.mnist:
        raise ValueError("reproduce needs --mnist FOLDER (or --pair NORMAL,REGULARIZED --evaluation FOLDER)")
    from gradviz.evaluation.report.reproduction import write_reproduction

    preamble = Path(args.preamble).read_text() if args.preamble else ""
    path = write_reproduction(args.mnist, args.fashion, args.out, preamble, args.mnist_beyond, args.interpretation,
                              args.ground_truth, args.autoattack, args.paper_scale, args.annotation_curve)
    print(f"written {path}")
    return 0


def _pair(args) -> int:
    from gradviz.evaluation.report.pair import pair_report

    names = [n.strip() for n in args.pair.split(",")]
    if len(names) != 2 or not args.evaluation:
        raise ValueError("--pair takes NORMAL,REGULARIZED and needs --evaluation FOLDER")
    if len(args.interpretation) > 1:
        raise ValueError("--pair reads one --interpretation folder")
    out = Path(args.out if args.out != "docs/REPRODUCTION.md" else "pair-report.md")
    out.write_text(pair_report(args.evaluation, *names, args.interpretation[0] if args.interpretation else None))
    print(f"written {out}")
    return 0
