"""`gradviz models`: list the zoo and the user's models; `gradviz models add`: register a model from outside."""
from __future__ import annotations

import json

from gradviz.nets.cards import list_models

ADD_HELP = """Register a model from outside for one dataset, checked and saved like a zoo model (card + safetensors).

Ways in (exactly one):
  --import package.module:Callable   a class or function that builds an nn.Module (with --kwargs JSON); runs that
                                     module's code as any import does, so it is offered here and never in the browser
  --torchscript FILE                 a TorchScript archive: runs its own TorchScript program, unpickles no Python
  --onnx FILE                        converted to a differentiable torch module (onnx2torch), refused unless it agrees
                                     with onnxruntime on sample inputs (naming the first operator that differs)

The model takes images [N, C, H, W] in [0, 1]; --mean/--std (per channel) are folded into it, so attacks, ε and
saliency stay in pixel space. A model that takes 3 channels is given a grey dataset's channel three times."""


def add_parser(sub) -> None:
    m = sub.add_parser("models", help="list the zoo and user models, or register one (models add)")
    m.add_argument("--json", action="store_true")
    actions = m.add_subparsers(dest="action")
    add = actions.add_parser("add", help="register a model from outside (import path, TorchScript or ONNX)",
                             description=ADD_HELP, formatter_class=_raw())
    add.add_argument("name", help="the model's name: letters, digits, '.', '_' or '-'")
    add.add_argument("--dataset", required=True, help="the dataset it classifies (gradviz data info lists them)")
    way = add.add_mutually_exclusive_group(required=True)
    way.add_argument("--import", dest="import_path", metavar="package.module:Callable")
    way.add_argument("--torchscript", metavar="FILE")
    way.add_argument("--onnx", metavar="FILE")
    add.add_argument("--kwargs", default="{}", help='keyword arguments for --import, as JSON: \'{"num_classes": 10}\'')
    add.add_argument("--weights", metavar="FILE.safetensors", help="weights for the network's own state_dict keys")
    add.add_argument("--mean", type=float, nargs="+", help="per-channel mean the model expects (default 0)")
    add.add_argument("--std", type=float, nargs="+", help="per-channel std the model expects (default 1)")
    add.add_argument("--replace", action="store_true", help="replace a registered model of that name")


def _raw():
    import argparse

    return argparse.RawDescriptionHelpFormatter


def run(args) -> int:
    if args.action == "add":
        return _add(args)
    cards = list_models()
    if args.json:
        print(json.dumps(cards, indent=2))
        return 0
    for c in cards:
        accuracy = c.get("clean_test_accuracy")
        print(f"{c['origin']:5} {c['name']:36} {c['dataset']:14} {c['defense']:17} "
              f"acc {'—' if accuracy is None else format(accuracy, '.4f')}")
    if not cards:
        print("no models found")
    return 0


def _add(args) -> int:
    from gradviz.registry.models import ModelSpec, register_model

    try:
        kwargs = json.loads(args.kwargs)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--kwargs is not JSON ({exc}): e.g. '{{\"num_classes\": 10}}'") from None
    if not isinstance(kwargs, dict):
        raise ValueError("--kwargs must be a JSON object of keyword arguments")
    spec = ModelSpec(name=args.name, dataset=args.dataset, import_path=args.import_path, kwargs=kwargs,
                     torchscript=args.torchscript, onnx=args.onnx, weights=args.weights, mean=args.mean, std=args.std)
    path = register_model(spec, replace=args.replace)
    card = json.loads(path.read_text())
    accuracy, n_test = card["clean_test_accuracy"], card["n_test"]
    measured = "— (test set not found)" if accuracy is None else f"{accuracy:.4f} on {n_test:,} test images"
    print(f"registered {card['name']} ({card['origin_source']}, {card['architecture']['parameters']:,} parameters) "
          f"for {card['dataset']}: clean accuracy {measured}")
    print(f"card: {path}")
    return 0
