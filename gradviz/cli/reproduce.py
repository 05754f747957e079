"""`gradviz reproduce`: docs/REPRODUCTION.md from evaluation and interpretation result folders."""
from __future__ import annotations

from pathlib import Path


def add_parser(sub) -> None:
    r = sub.add_parser("reproduce", help="write docs/REPRODUCTION.md from evaluation result folders")
    r.add_argument("--mnist", required=True, help="result folder of an mnist evaluate run")
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
    r.add_argument("--preamble", default=None, help="Markdown file with the prose that precedes the tables")
    r.add_argument("--out", default="docs/REPRODUCTION.md")


def run(args) -> int:
    from gradviz.evaluation.report.reproduction import write_reproduction

    preamble = Path(args.preamble).read_text() if args.preamble else ""
    path = write_reproduction(args.mnist, args.fashion, args.out, preamble, args.mnist_beyond, args.interpretation,
                              args.ground_truth, args.autoattack, args.paper_scale)
    print(f"written {path}")
    return 0
