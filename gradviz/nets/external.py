"""Models no one here wrote: any PyTorch image classifier by import path, a TorchScript archive, or an ONNX file
converted to a differentiable torch module, framed so that every part of gradviz sees what its own CNN is — a
module mapping images [N, C, H, W] in [0, 1] to logits [N, classes].

`Framed` folds the model's normalisation (mean/std) and, for a colour model on a grey dataset, the repetition of
the grey channel into the module, so attacks, ε and saliency stay in pixel space. A card's `architecture` with
name "external" says how to build it again (gradviz.nets.architecture.build_model); its weights are the inner
network's state, stored as safetensors like the zoo's.

What each way in can do when loaded: an import path runs that module's code, as any import does (so it is taken
from the CLI or a config file only, never from the browser); a TorchScript archive runs its own TorchScript
program but unpickles no Python objects; an ONNX file holds no code at all, only a graph of operators.
"""
from __future__ import annotations

import importlib
import inspect
import re
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from gradviz.names import whole_match
from gradviz.nets.store import load_model, sha256_file

SOURCES = ("import", "torchscript", "onnx")
IMPORT_PATH_RULE = "package.module:Callable, e.g. torchvision.models:resnet18"
_IMPORT_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
ONNX_TOLERANCE = {"atol": 1e-4, "rtol": 1e-3}  # torch vs onnxruntime on float32: a converted graph must agree this well
ONNX_CONVERTER = "onnx2torch"


class ExternalModelError(ValueError):
    """A model from outside cannot be used; the message says what failed and what to do."""


class Framed(nn.Module):
    """`net` seen from pixel space: images [N, C, H, W] in [0, 1] → grey repeated to 3 channels if asked →
    (x − mean) / std per channel → net → logits. `architecture` is the card section that rebuilds it."""

    def __init__(self, net: nn.Module, architecture: dict):
        super().__init__()
        self.net = net
        self.architecture = architecture
        frame = architecture["input"]
        shape = (1, -1, 1, 1)
        self.register_buffer("mean", torch.tensor(frame["mean"], dtype=torch.float32).view(shape), persistent=False)
        self.register_buffer("std", torch.tensor(frame["std"], dtype=torch.float32).view(shape), persistent=False)
        self.grey_to_rgb = bool(frame["grey_to_rgb"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.grey_to_rgb:
            x = x.expand(-1, 3, -1, -1)
        return self.net((x - self.mean) / self.std)


def check_import_path(target: str) -> str:
    if not whole_match(_IMPORT_PATH, target):
        raise ExternalModelError(f"import path {target!r} is refused: use {IMPORT_PATH_RULE}")
    return target


def _resolve(target: str):
    module_name, _, attribute = check_import_path(target).partition(":")
    try:
        obj = importlib.import_module(module_name)
    except Exception as exc:  # any error while importing the user's module is theirs to see, in one line
        raise ExternalModelError(f"{target}: module {module_name!r} does not import ({type(exc).__name__}: {exc})") from None
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise ExternalModelError(f"{target}: {module_name!r} has no attribute {attribute!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ExternalModelError(f"{target}: {attribute!r} is not a class or function that builds a model")
    return obj


def source_hashes(target: str) -> dict[str, str]:
    """sha256 of the source files that define `target`: its module's and, when it lives elsewhere, the callable's."""
    obj = _resolve(target)
    files = {inspect.getsourcefile(importlib.import_module(target.partition(":")[0]))}
    try:
        files.add(inspect.getsourcefile(obj))
    except TypeError:  # a builtin or C extension: no source file
        pass
    return {str(Path(f).resolve()): sha256_file(Path(f)) for f in files if f}


def _build_import(architecture: dict) -> nn.Module:
    factory = _resolve(architecture["target"])
    try:
        net = factory(**architecture.get("kwargs", {}))
    except Exception as exc:
        raise ExternalModelError(f"{architecture['target']}(**{architecture.get('kwargs', {})}) failed: "
                                 f"{type(exc).__name__}: {exc}") from None
    if not isinstance(net, nn.Module):
        raise ExternalModelError(f"{architecture['target']} returned a {type(net).__name__}, not a torch nn.Module")
    for path, digest in architecture.get("sources", {}).items():
        found = sha256_file(Path(path)) if Path(path).is_file() else "missing"
        if found != digest:
            warnings.warn(f"{path} changed since the model was registered (sha256 {found[:12]} ≠ {digest[:12]}): "
                          "the same weights may now mean a different network", stacklevel=3)
    return net


def _build_file(architecture: dict, folder: Path | None) -> nn.Module:
    if folder is None:
        raise ExternalModelError(f"a {architecture['source']} model is built from its file: pass the card's folder")
    path = folder / Path(architecture["file"]).name
    if not path.is_file():
        raise ExternalModelError(f"{path}: the {architecture['source']} file of this model is missing")
    if sha256_file(path) != architecture["file_sha256"]:
        raise ExternalModelError(f"{path}: sha256 differs from its card (changed or damaged); register it again")
    return torchscript_module(path) if architecture["source"] == "torchscript" else onnx_module(path)


def torchscript_module(path: Path) -> nn.Module:
    try:
        return torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise ExternalModelError(f"{path}: not a TorchScript archive torch can load ({type(exc).__name__}: {exc})") from None


def onnx_module(path: Path) -> nn.Module:
    """An ONNX file as a differentiable torch module (onnx2torch); an operator it cannot convert is named."""
    import onnx
    from onnx2torch import convert

    try:
        graph = onnx.load(str(path), load_external_data=False)
        onnx.checker.check_model(graph)
    except Exception as exc:
        raise ExternalModelError(f"{path}: not a valid ONNX model ({type(exc).__name__}: {exc})") from None
    try:
        return convert(_fold_constant_identities(graph))
    except NotImplementedError as exc:
        found = re.search(r"operation_type='(\w+)'", str(exc))
        op = found.group(1) if found else str(exc)
        raise ExternalModelError(f"{path}: ONNX operator {op} has no differentiable torch conversion "
                                 f"({ONNX_CONVERTER}); export the model without it") from None
    except Exception as exc:  # the converter's own failure on an operator it claims (e.g. a missing attribute)
        raise ExternalModelError(f"{path}: {ONNX_CONVERTER} could not convert the graph "
                                 f"({type(exc).__name__}: {exc})") from None


def _fold_constant_identities(graph):
    """The graph with every Identity of a stored tensor replaced by a copy of that tensor under the Identity's
    output name: torch's exporter writes them for shared weights, and the converter cannot follow them."""
    from onnx import numpy_helper

    stored = {t.name: t for t in graph.graph.initializer}
    folded = [node for node in graph.graph.node if node.op_type == "Identity" and node.input[0] in stored]
    for node in folded:
        graph.graph.initializer.append(numpy_helper.from_array(numpy_helper.to_array(stored[node.input[0]]),
                                                               node.output[0]))
        graph.graph.node.remove(node)
    return graph


def build_external(architecture: dict, folder: Path | None = None) -> Framed:
    """The framed model an "external" architecture section describes (weights as built; the caller loads them)."""
    source = architecture.get("source")
    if source not in SOURCES:
        raise ExternalModelError(f"unknown model source {source!r}; use {', '.join(SOURCES)}")
    net = _build_import(architecture) if source == "import" else _build_file(architecture, folder)
    return Framed(net, architecture)


class ChannelMismatch(ExternalModelError):
    """--mean/--std name another number of channels than the framing tried."""


def frame_architecture(base: dict, shape: tuple[int, int, int], num_classes: int, grey_to_rgb: bool,
                       mean: list[float] | None = None, std: list[float] | None = None) -> dict:
    """A card's "external" architecture: `base` (how to build the net) framed for images of `shape` (C, H, W)."""
    channels, height, width = shape
    model_channels = 3 if grey_to_rgb else channels
    mean = mean if mean is not None else [0.0] * model_channels
    std = std if std is not None else [1.0] * model_channels
    if len(mean) != model_channels or len(std) != model_channels or min(std) <= 0:
        raise ChannelMismatch(f"--mean and --std need {model_channels} values (one per channel the model takes), "
                              f"std > 0; got mean {mean}, std {std}")
    return {"name": "external", **base, "num_classes": num_classes,
            "input": {"channels": channels, "height": height, "width": width, "value_range": [0.0, 1.0],
                      "mean": [float(v) for v in mean], "std": [float(v) for v in std], "grey_to_rgb": grey_to_rgb}}


def frame(base: dict, shape: tuple[int, int, int], num_classes: int, dataset: str, folder: Path | None = None,
          mean: list[float] | None = None, std: list[float] | None = None,
          prepare: Callable[[Framed], None] | None = None) -> Framed:
    """The model `base` describes, framed for `dataset`'s images of `shape`: its own channels first; a model that
    refuses one grey channel is tried with the grey repeated to three (the card says so: `grey_to_rgb`).
    `prepare` (loading given weights) runs on each candidate before it is tried. Checks the output is logits
    [N, num_classes] of finite floats."""
    channels, height, width = shape
    errors = []
    for grey_to_rgb in ([False, True] if channels == 1 else [False]):
        try:
            architecture = frame_architecture(base, shape, num_classes, grey_to_rgb, mean, std)
        except ChannelMismatch as exc:
            errors.append(str(exc))
            continue
        model = build_external(architecture, folder).eval()
        if prepare is not None:
            prepare(model)
        try:
            with torch.no_grad():
                out = model(torch.rand(2, channels, height, width, generator=torch.Generator().manual_seed(0)))
        except Exception as exc:  # the user's forward: any error is a message, not a traceback
            errors.append(f"{'3 (grey repeated)' if grey_to_rgb else channels} channels: {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:200] if str(exc) else ''}")
            continue
        check_logits(out, num_classes, dataset)
        return model
    raise ExternalModelError(f"the model does not take {dataset}'s images [N, {channels}, {height}, {width}]: "
                             + "; ".join(errors))


def check_logits(out: object, num_classes: int, dataset: str) -> None:
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != 2:
        shape = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ExternalModelError(f"the model returns {shape} for 2 images; gradviz needs logits [N, classes]")
    if out.shape[1] != num_classes:
        raise ExternalModelError(f"the model returns {out.shape[1]} logits but {dataset} has {num_classes} "
                                 "classes (for a torchvision or timm model pass num_classes in its kwargs)")
    if not out.is_floating_point() or not torch.isfinite(out).all():
        raise ExternalModelError("the model's logits are not finite floats")


def import_base(target: str, kwargs: dict | None = None) -> dict:
    """How to build a model by import path, with the sha256 of its source files (importing it: a module that does
    not import is named here, before anything else)."""
    return {"source": "import", "target": check_import_path(target), "kwargs": dict(kwargs or {}),
            "sources": source_hashes(target)}


def outside_model(model: str, kwargs: dict | None, dataset: str, shape: tuple[int, int, int],
                  num_classes: int) -> nn.Module:
    """A training run's `model`: an import path built afresh (seeded by the caller) and framed for `dataset`'s
    images of `shape`, or a registered model with its weights (registered for that dataset)."""
    if ":" in model:
        return frame(import_base(model, kwargs), shape, num_classes, dataset)
    net, card = load_model(model)
    if card["dataset"] != dataset:
        raise ValueError(f"--model {model} is registered for {card['dataset']}, not {dataset}")
    return net
