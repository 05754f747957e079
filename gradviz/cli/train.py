"""`gradviz train`: one model of any defense, with checkpoints and resume."""
from __future__ import annotations

import sys
from dataclasses import fields

from gradviz.cli.common import Help
from gradviz.data.datasets import dataset_names
from gradviz.nets.architecture import LAYER_STYLES, ZOO_WIDTH
from gradviz.nets.cards import free_user_name
from gradviz.training.defenses import DEFENSE_SPECS, DEFENSES, SETTINGS


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train one model of any defense", formatter_class=Help)
    p.add_argument("--dataset", choices=dataset_names(), default="mnist")
    p.add_argument("--defense", choices=DEFENSES, default="normal")
    _add_defense_settings(p)
    p.add_argument("--lam-ref", type=float, default=None,
                   help="λ in the reference code's units (converted: λ = λ_ref / 512)")
    p.add_argument("--epochs", type=float, default=5.0)
    p.add_argument("--steps", type=int, default=None, help="train for this many steps (overrides --epochs)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lr-schedule", choices=("constant", "cosine"), default="constant",
                   help="cosine: anneal the learning rate to 0 over the run")
    p.add_argument("--init-from", default=None, help="start from this model's weights (a zoo or user model name)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda when available)")
    p.add_argument("--width", type=int, default=None,
                   help=f"FC width (the paper's is 1024; default: --init-from's, else {ZOO_WIDTH})")
    p.add_argument("--layers", choices=LAYER_STYLES, default=None,
                   help="zoo: the committed zoo's layers; reference: the authors' code exactly (no bias before "
                        "batch norm, no γ, ε 1e-3, Xavier init); default: --init-from's, else zoo")
    p.add_argument("--model", default=None,
                   help="another architecture: package.module:Callable (built afresh, e.g. torchvision.models:resnet18) "
                        "or a registered model's name (fine-tuned from its weights; gradviz models add)")
    p.add_argument("--model-kwargs", type=_json_object, default={},
                   help='keyword arguments for --model package.module:Callable, as JSON: \'{"num_classes": 10}\'')
    p.add_argument("--annotations", default=None, metavar="FILE.npz",
                   help="where a person said the model must not look (an annotation set from the Annotate page or "
                        "gradviz annotations): a masked defense penalises the annotated images, the rest train "
                        "with plain cross-entropy; with --init-from this fine-tunes an existing model")
    p.add_argument("--augment", action="store_true", help="random ±2 pixel shifts")
    p.add_argument("--name", default=None, help="model name (default: dataset-defense[-lamX])")
    p.add_argument("--out", default=None, help="output folder (default: the user model folder)")
    p.add_argument("--data-dir", default=None, help="folder with the dataset's IDX files")
    p.add_argument("--train-subset", type=int, default=None, help="train on only the first N training digits")
    p.add_argument("--holdout", type=int, default=0,
                   help="hold out N training digits (seeded, the same for every --seed), as a sweep does")
    p.add_argument("--fast-penalty", action="store_true",
                   help="the penalty's hand-written CPU fast path (same values to float rounding, ~1.5x faster on "
                        "PaperCNN); a model with a layer it does not know trains with plain autograd, said once")
    _add_checkpointing(p)


def _json_object(text: str) -> dict:
    import argparse
    import json

    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("a JSON object of keyword arguments, e.g. '{\"num_classes\": 10}'")
    return value


def _add_defense_settings(p) -> None:
    """One flag per defense setting, from the defense specs (their defaults are TrainConfig's)."""
    from gradviz.training.config import TrainConfig

    defaults = TrainConfig(device="cpu")
    for setting in SETTINGS.values():
        users = ", ".join(d.name for d in DEFENSE_SPECS.values() if setting.name in d.settings)
        kind = {"choices": setting.choices} if setting.choices else {"type": float}
        p.add_argument(setting.flag, default=getattr(defaults, setting.name), **kind,
                       help=f"{setting.help} ({users})")


def _add_checkpointing(p) -> None:
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted run of this name from its checkpoint, if there is one")
    p.add_argument("--checkpoint-every", type=int, default=250, help="save the run's whole state every N steps")
    p.add_argument("--checkpoint-dir", default=None,
                   help="where unfinished runs keep checkpoints (default: GRADVIZ_CHECKPOINTS or ~/.gradviz/checkpoints)")


def config_from(args):
    import torch

    from gradviz.training.config import TrainConfig
    from gradviz.training.penalties import from_reference_lambda

    lam = from_reference_lambda(args.lam_ref) if args.lam_ref is not None else args.lam
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but this torch build sees no CUDA device")
    given = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)}
    return TrainConfig(**given | {"lam": lam, "device": device} | _architecture_of(args))


def _architecture_of(args) -> dict:
    """--width and --layers as given, else those of the --init-from model (a fine-tune keeps its architecture),
    else the zoo's."""
    source = {}
    if args.init_from and (args.width is None or args.layers is None):
        from gradviz.nets.store import load_model

        source = load_model(args.init_from)[1].get("architecture", {})
    return {"width": args.width if args.width is not None else int(source.get("width", ZOO_WIDTH)),
            "layers": args.layers if args.layers is not None else source.get("layers", "zoo")}


def run(args) -> int:
    from gradviz.nets.checkpoints import checkpoint_path
    from gradviz.paths import checkpoint_dir
    from gradviz.training.loop import train_and_save

    config = config_from(args)
    config.validate()
    if args.out is None:  # a user model: never under a zoo model's name
        config.name = config.name or free_user_name(config.default_name())
    checkpoint = checkpoint_path(args.checkpoint_dir or checkpoint_dir(), config.name or config.default_name())
    if args.resume and checkpoint.is_file():
        print(f"resuming from {checkpoint}", file=sys.stderr)
    path, card = train_and_save(config, out=args.out, checkpoint=checkpoint, checkpoint_every=args.checkpoint_every,
                                resume=args.resume)
    print(f"saved {path}  clean test accuracy {card['clean_test_accuracy']:.4f} "
          f"({card['n_test']} images, {card['train_seconds']:.0f} s on {card['device']})")
    return 0
