"""`gradviz data`: where each dataset comes from, downloading MNIST, writing the committed samples."""
from __future__ import annotations

from pathlib import Path

from gradviz.data.datasets import CLASS_NAMES, DATASETS, DatasetNotFound, download_mnist, load_arrays
from gradviz.data.ground_truth import MASK_MEANING


def add_parser(sub) -> None:
    d = sub.add_parser("data", help="show where datasets come from, download MNIST, or write the committed samples")
    d.add_argument("action", choices=("info", "download", "sample"), nargs="?", default="info",
                   help="sample: the first --n test images (labels, masks, source) as assets/samples/NAME.npz")
    d.add_argument("dataset", nargs="?", choices=DATASETS, default=None)
    d.add_argument("--data-dir", default=None)
    d.add_argument("--n", type=int, default=100, help="sample: how many test images")
    d.add_argument("--out", default=None, help="sample: the folder (default: assets/samples)")


def run(args) -> int:
    if args.action == "download":
        print(f"downloaded and checked {download_mnist(args.data_dir or 'data')}")
        return 0
    if args.action == "sample":  # how assets/samples/ (what the app shows without the full data) was made
        from gradviz import paths
        from gradviz.data.datasets import write_sample

        for name in DATASETS if args.dataset is None else [args.dataset]:
            print(f"wrote {write_sample(name, args.n, Path(args.out) if args.out else paths.SAMPLES_DIR)}")
        return 0
    for name in DATASETS if args.dataset is None else [args.dataset]:
        try:
            a = load_arrays(name, args.data_dir)
            shape = "×".join(map(str, a.test_x.shape[1:]))
            truth = f"  masks: {MASK_MEANING[name][0]}" if name in MASK_MEANING else ""
            print(f"{name:14} train {len(a.train_x):6}  test {len(a.test_x):6}  {shape}  "
                  f"{len(CLASS_NAMES[name])} classes{truth}  source {a.source}")
        except DatasetNotFound as exc:
            print(f"{name:14} not found: {exc}")
    return 0
