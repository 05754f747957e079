"""`gradviz grid`: the paper's target grids, every class pushed towards every class, as PNG + JSON."""
from __future__ import annotations

import json
from pathlib import Path

from gradviz.attacks.registry import attack_names, parse_attack_params
from gradviz.cli.common import Help, models_of
from gradviz.data.datasets import dataset_names


def add_parser(sub) -> None:
    g = sub.add_parser("grid", help="the paper's target grids: every class pushed towards every class, as PNG + JSON",
                       formatter_class=Help)
    g.add_argument("--dataset", choices=dataset_names(), default="mnist")
    g.add_argument("--models", default="mnist-normal,mnist-distilled,mnist-gradreg")
    g.add_argument("--attack", choices=attack_names(), default="itgsm",
                   help="targeted attacks make 10 columns (one per target), untargeted ones a single column")
    g.add_argument("--eps", type=float, default=None,
                   help="L∞ budget (default: itgsm 1, the paper's unprojected grids; others 0.3; JSMA has none)")
    g.add_argument("--param", action="append", metavar="ATTACK.SETTING=VALUE",
                   help="a setting over the grid's default (itgsm: steps 25, step_scale 0.1 = step 0.1), e.g. "
                        "itgsm.steps=50 or jsma.gamma=0.1")
    g.add_argument("--iteration", type=int, default=10, help="the iteration written (the paper's MNIST grids: 10)")
    g.add_argument("--per-class", type=int, default=1, help="rows: the first N test images of each class")
    g.add_argument("--device", default=None)
    g.add_argument("--data-dir", default=None)
    g.add_argument("--out", required=True)


def run(args) -> int:
    from gradviz.attacks.grids import first_of_each_class, mosaic, provenance, target_grid
    from gradviz.data.datasets import load_dataset, num_classes
    from gradviz.data.images import to_png

    models, cards = models_of(args)
    device = args.device or "cpu"
    x, y = first_of_each_class(*load_dataset(args.dataset, "test", args.data_dir), per_class=args.per_class,
                               classes=num_classes(args.dataset))
    params = parse_attack_params(args.param)
    stray = sorted(set(params) - {args.attack})
    if stray:
        raise ValueError(f"--param names {', '.join(stray)}, but the grid's attack is {args.attack}")
    grid = target_grid(models, x.to(device), y, attack=args.attack, eps=args.eps,
                       params=params.get(args.attack))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = f"first {args.per_class} test image(s) of each class"
    for name in models:
        record = provenance(grid, name, args.iteration, cards, args.dataset, rows)
        stem = out / f"{name}-{args.attack}-it{record['iteration']}"
        stem.with_suffix(".png").write_bytes(to_png(mosaic(grid.cells(name, args.iteration))))
        stem.with_suffix(".json").write_text(json.dumps(record, indent=2))
        share = grid.success_share(grid.predicted[name][record["iteration"]])
        what = "predicts the target in" if grid.targeted else "is fooled in"
        print(f"{stem}.png  {name} {what} {share:.0%} of the {int(grid.counted().sum())} "
              f"{'off-diagonal ' if grid.targeted else ''}cells")
    return 0
