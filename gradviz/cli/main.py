"""gradviz on the command line: a dispatcher. Each subcommand is one module of this package with `add_parser(sub)`
and `run(args)`: train, zoo (build, sweep, status, carry, adopt, table from a recipe), evaluate, interpret,
reproduce, study, grid, saliency, models, data, annotations."""
from __future__ import annotations

import argparse
import sys

from gradviz.cli import annotations, data, evaluate, grid, interpret, models, reproduce, saliency, study, train, zoo
from gradviz.data.datasets import DatasetNotFound
from gradviz.machine import keep_freed_memory
from gradviz.nets.cards import ModelFileError

SUBCOMMANDS = {"train": train, "zoo": zoo, "evaluate": evaluate, "interpret": interpret, "reproduce": reproduce,
               "study": study, "grid": grid, "saliency": saliency, "models": models, "data": data,
               "annotations": annotations}
BATCH_COMMANDS = {"train", "evaluate", "interpret", "grid", "annotations"}  # long CPU loops over batches of one shape


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gradviz", description=(
        "gradviz: input-gradient regularization, saliency and adversarial robustness (Ross & Doshi-Velez 2018). "
        "Train models, build the zoo from recipes, evaluate and interpret them, make target grids and saliency "
        "maps, write the reproduction report, and run the human study."))
    sub = parser.add_subparsers(dest="command", required=True)
    for command in SUBCOMMANDS.values():
        command.add_parser(sub)
    return parser


# What each optional package belongs to: `pip install gradviz` is the core; a command that needs more names the
# extra to install instead of a traceback.
EXTRAS = {"onnx": "models", "onnx2torch": "models", "onnxruntime": "models", "torchvision": "models", "timm": "models",
          "streamlit": "app", "streamlit_drawable_canvas": "app", "sqlalchemy": "study", "psycopg": "study",
          "statsmodels": "study", "krippendorff": "study", "pyarrow": "study", "ray": "ray", "psutil": "ray"}


def missing_extra(exc: ModuleNotFoundError) -> str | None:
    """The one-line message for a missing optional package, or None when the module is not an extra's."""
    extra = EXTRAS.get((exc.name or "").split(".")[0])
    if extra is None:
        return None
    return f"error: this needs gradviz's {extra!r} extra ({exc.name} is missing): pip install 'gradviz[{extra}]'"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in BATCH_COMMANDS:
        keep_freed_memory()
    try:
        return SUBCOMMANDS[args.command].run(args)
    except (ValueError, DatasetNotFound, ModelFileError) as exc:  # CheckpointError, DatasetIntegrityError too
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        message = missing_extra(exc)
        if message is None:
            raise
        print(message, file=sys.stderr)
        return 2
