"""`gradviz saliency`: saliency maps of one test image through several models, on one shared scale, as PNG + JSON."""
from __future__ import annotations

import json
from pathlib import Path

from gradviz.attribution.methods import REGISTRY as SALIENCY_METHODS
from gradviz.cli.common import Help, models_of
from gradviz.data.datasets import dataset_names
from gradviz.params import parse_settings


def add_parser(sub) -> None:
    sal = sub.add_parser("saliency", help="saliency maps of one test image through several models, as PNG + JSON",
                         formatter_class=Help)
    sal.add_argument("--dataset", choices=dataset_names(), default="mnist")
    sal.add_argument("--models", default="mnist-normal,mnist-gradreg")
    sal.add_argument("--method", choices=list(SALIENCY_METHODS), default="gradient-logsum",
                     help="; ".join(f"{m.name}: {m.label}" for m in SALIENCY_METHODS.values()))
    sal.add_argument("--index", type=int, default=0, help="the test image")
    sal.add_argument("--cls", type=int, default=None, help="the class to explain (methods that take one; "
                                                           "default: the true label)")
    sal.add_argument("--param", action="append", metavar="METHOD.SETTING=VALUE",
                     help="a method setting, e.g. integrated-gradients.n_steps=64 or smoothgrad.samples=32")
    sal.add_argument("--own-scale", action="store_true", help="scale each map by its own maximum (default: one "
                                                              "shared scale, so magnitudes compare)")
    sal.add_argument("--device", default=None)
    sal.add_argument("--data-dir", default=None)
    sal.add_argument("--out", required=True)


def run(args) -> int:
    from gradviz.attribution.methods import explain, get_method, normalise
    from gradviz.data.datasets import load_dataset
    from gradviz.data.images import to_png16

    entry = get_method(args.method)
    given = parse_settings(args.param, "--param", example="integrated-gradients.n_steps=64")
    settings = entry.settings(given.pop(entry.name, {}))
    if given:
        raise ValueError(f"--param names {', '.join(given)}, but the method is {entry.name}")
    models, _ = models_of(args)
    x, y = load_dataset(args.dataset, "test", args.data_dir)
    if not 0 <= args.index < len(x):
        raise ValueError(f"--index must lie in [0, {len(x) - 1}], got {args.index}")
    image, label = x[args.index:args.index + 1].to(args.device or "cpu"), int(y[args.index])
    views = explain(models, image, label, entry.name, args.cls, **settings)
    maps, scales = normalise([v["map"] for v in views.values()], shared=not args.own_scale, signed=False)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for (name, view), shown, scale in zip(views.items(), maps, scales):
        stem = out / f"{name}-{entry.name}-{args.index}"
        stem.with_suffix(".png").write_bytes(to_png16(shown))
        record = {"model": name, "method": entry.name, "settings": settings, "dataset": args.dataset,
                  "test_index": args.index, "label": label, "explained_class": args.cls if entry.takes_class else None,
                  "scale": scale, "shared_scale": not args.own_scale, "probabilities": view["probs"].tolist()}
        stem.with_suffix(".json").write_text(json.dumps(record, indent=2))
        print(f"{stem}.png  {name} predicts {int(view['probs'].argmax())} ({view['probs'].max():.0%}); "
              f"white = |attribution| {scale:.3g}")
    return 0
