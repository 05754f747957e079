"""`gradviz annotations`: what an annotation set holds, one made from a dataset's own masks (the path a person's
strokes take, for the interaction-efficiency runs), and before/after numbers of a fine-tuned model."""
from __future__ import annotations

from pathlib import Path

from gradviz.cli.common import Help
from gradviz.data.datasets import dataset_names


def add_parser(sub) -> None:
    a = sub.add_parser("annotations", help="show, make (from a dataset's masks) and check annotation sets",
                       formatter_class=Help)
    actions = a.add_subparsers(dest="action", required=True)
    show = actions.add_parser("show", help="what an annotation set (.npz) holds, checked")
    show.add_argument("file")
    make = actions.add_parser("from-masks", help="annotate the first --n training images with the dataset's masks")
    make.add_argument("--dataset", choices=dataset_names(), required=True)
    make.add_argument("--n", type=int, required=True, help="how many training images to annotate")
    make.add_argument("--out", required=True, help="the .npz to write")
    compare = actions.add_parser("compare", help="accuracy with and without the shortcut, the share of |gradient| "
                                                 "on the marked region and the swatch-follow rate, per model")
    compare.add_argument("--dataset", choices=dataset_names(), required=True)
    compare.add_argument("--models", required=True, help="comma-separated, e.g. BEFORE,AFTER")
    compare.add_argument("--n", type=int, default=1000, help="first n test images")
    compare.add_argument("--device", default=None)


def run(args) -> int:
    import numpy as np

    from gradviz.data.annotations import from_generated_masks, load_annotations, save_annotations

    if args.action == "show":
        a = load_annotations(args.file)
        kinds = dict(zip(*np.unique(a.kinds, return_counts=True))) if len(a) else {}
        print(f"{len(a)} annotated training images of {a.dataset} ({a.height}×{a.width}), made looking at "
              f"{a.model or 'no model'}; " + ", ".join(f"{int(v)} {k}" for k, v in kinds.items())
              + f"; {int(a.not_here.sum())} pixels marked 'not here', {int(a.here.sum())} 'here'")
        return 0
    if args.action == "from-masks":
        from gradviz.data.datasets import load_masks

        masks = load_masks(args.dataset, "train")
        if masks is None:
            raise ValueError(f"{args.dataset} has no masks to annotate with")
        if not 1 <= args.n <= len(masks):
            raise ValueError(f"--n must lie in [1, {len(masks)}]")
        path = save_annotations(from_generated_masks(args.dataset, masks[:, 0].numpy(), np.arange(args.n)),
                                Path(args.out))
        print(f"wrote {path}: the first {args.n} training images of {args.dataset}, annotated with its masks")
        return 0
    from gradviz.cli.common import models_of
    from gradviz.evaluation.runs.shortcut_check import shortcut_table

    models, _ = models_of(args)
    print(shortcut_table(models, args.dataset, args.n, args.device or "cpu").to_string(index=False,
                                                                                      float_format="%.3f"))
    return 0
