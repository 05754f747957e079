"""`gradviz data`: where each dataset comes from, downloading MNIST, writing the committed samples, and registering
a dataset of your own (`data add`)."""
from __future__ import annotations

import sys
from pathlib import Path

from gradviz.data.datasets import DatasetNotFound, class_names, dataset_names, download_mnist, load_arrays
from gradviz.data.ground_truth import MASK_MEANING

ADD_HELP = """Register a dataset of your own: an image folder or an .npz, checked and stored with its sha256.

  PATH/train/<class>/*.png|jpg and PATH/test/<class>/*.png|jpg   class names from the folder names
  PATH.npz with x_train, y_train, x_test, y_test                 uint8 [N, H, W] or [N, H, W, 3] (or [N, 3, H, W]),
        optional masks_train, masks_test (True where a model must not look) and class_names

Images decode only as PNG, JPEG, GIF, BMP, TIFF or WebP, at most 10 MB and 1024 pixels a side each; images of
different sizes are refused unless --resize gives one size for all."""


def add_parser(sub) -> None:
    d = sub.add_parser("data", help="show where datasets come from, download MNIST, write the committed samples, "
                                    "or register your own (data add)")
    actions = d.add_subparsers(dest="action")
    for action, text in (("info", "where each dataset comes from (the default)"), ("download", "fetch MNIST"),
                         ("sample", "the first --n test images as assets/samples/NAME.npz")):
        a = actions.add_parser(action, help=text)
        a.add_argument("dataset", nargs="?", choices=("mnist",) if action == "download" else dataset_names(),
                       default=None)
        a.add_argument("--data-dir", default=None)
        if action == "sample":
            a.add_argument("--n", type=int, default=100, help="how many test images")
            a.add_argument("--out", default=None, help="the folder (default: assets/samples)")
    add = actions.add_parser("add", help="register an image folder or an .npz as a dataset", description=ADD_HELP,
                             formatter_class=_raw())
    add.add_argument("name", help="the dataset's name: letters, digits, '.', '_' or '-'")
    add.add_argument("path", help="an image folder (train/<class>/, test/<class>/) or an .npz file")
    add.add_argument("--resize", metavar="HxW", default=None, help="resize every image to this size (default: "
                                                                    "refuse images of different sizes)")
    add.add_argument("--channels", type=int, choices=(1, 3), default=None,
                     help="1 (grey) or 3 (colour); default: grey only when every image is grey")
    add.add_argument("--replace", action="store_true", help="replace a registered dataset of that name")


def _raw():
    import argparse

    return argparse.RawDescriptionHelpFormatter


def run(args) -> int:
    action = args.action or "info"
    if action == "add":
        return _add(args)
    if action == "download":
        print(f"downloaded and checked {download_mnist(args.data_dir or 'data')}")
        return 0
    if action == "sample":  # how assets/samples/ (what the app shows without the full data) was made
        from gradviz import paths
        from gradviz.data.datasets import write_sample

        for name in dataset_names() if args.dataset is None else [args.dataset]:
            print(f"wrote {write_sample(name, args.n, Path(args.out) if args.out else paths.SAMPLES_DIR)}")
        return 0
    chosen = getattr(args, "dataset", None)
    for name in dataset_names() if chosen is None else [chosen]:
        try:
            a = load_arrays(name, getattr(args, "data_dir", None))
            shape = "×".join(map(str, a.test_x.shape[1:]))
            truth = f"  masks: {MASK_MEANING[name][0]}" if name in MASK_MEANING else ""
            print(f"{name:14} train {len(a.train_x):6}  test {len(a.test_x):6}  {shape}  "
                  f"{len(class_names(name))} classes{truth}  source {a.source}")
        except DatasetNotFound as exc:
            print(f"{name:14} not found: {exc}")
    return 0


def _add(args) -> int:
    from gradviz.data.adding import add_dataset
    from gradviz.progress import progress_bar

    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = progress_bar(total, 0, "decoding", enabled=sys.stderr.isatty() or total > 1000, unit="image")
        bar.update(1)

    try:
        card = add_dataset(args.name, args.path, resize=args.resize, channels=args.channels, replace=args.replace,
                           progress=progress)
    finally:
        if bar is not None:
            bar.close()
    kind = "colour" if card["channels"] == 3 else "grey"
    print(f"registered {card['name']}: {card['n_train']:,} train + {card['n_test']:,} test {kind} images of "
          f"{card['height']}×{card['width']}, {len(card['class_names'])} classes "
          f"({', '.join(card['class_names'][:10])}{' …' if len(card['class_names']) > 10 else ''}), "
          f"sha256 {card['sha256'][:16]}…")
    return 0
