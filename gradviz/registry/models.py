"""Register a model from outside (gradviz.nets.external) for one dataset: build it, frame it for the dataset's
images, check it really is an image classifier for them, and save it like a zoo model — card, safetensors
weights and, for TorchScript and ONNX, the file itself — all at once or not at all.

Checks, each with a message that says what to change: the import path imports and builds an nn.Module; given
weights fit it exactly; the output is [N, classes] of finite floats; the input gradient exists and is finite;
an ONNX file converts and its torch module agrees with onnxruntime on sample inputs (ONNX_TOLERANCE), else the
first operator whose output differs is named.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from gradviz import __version__
from gradviz.data.datasets import DatasetNotFound, class_names, input_shape, load_dataset
from gradviz.nets.architecture import describe, evaluating
from gradviz.nets.cards import CARD_SUFFIX, refuse_zoo_name
from gradviz.nets.external import (
    ONNX_CONVERTER,
    ONNX_TOLERANCE,
    ExternalModelError,
    Framed,
    frame,
    import_base,
    onnx_module,
)
from gradviz.nets.store import save_model, sha256_file
from gradviz.paths import path_inside, safe_name, user_model_dir

FILE_SUFFIX = {"torchscript": ".torchscript", "onnx": ".onnx"}
ACCURACY_IMAGES = 2_000  # registration measures clean accuracy on the first 2,000 test images (evaluate: all)


@dataclass
class ModelSpec:
    """One way in and its settings: exactly one of `import_path`, `torchscript`, `onnx`."""

    name: str
    dataset: str
    import_path: str | None = None
    kwargs: dict = field(default_factory=dict)
    torchscript: str | Path | None = None
    onnx: str | Path | None = None
    weights: str | Path | None = None
    mean: list[float] | None = None
    std: list[float] | None = None

    def source(self) -> str:
        given = [s for s, v in (("import", self.import_path), ("torchscript", self.torchscript),
                                ("onnx", self.onnx)) if v]
        if len(given) != 1:
            raise ExternalModelError("give exactly one of --import, --torchscript or --onnx")
        return given[0]


def _base(spec: ModelSpec, source: str, staged: Path | None) -> dict:
    """How to build the net again: an import path with its sources' hashes, or the staged file's name and hash."""
    if source == "import":
        return import_base(spec.import_path, spec.kwargs)
    base = {"source": source, "file": staged.name, "file_sha256": sha256_file(staged)}
    if source == "onnx":
        base["converter"] = f"{ONNX_CONVERTER} {version(ONNX_CONVERTER)}"
    return base


def _load_weights(model: Framed, path: Path) -> None:
    """Weights for the user's own network (its state_dict keys, not gradviz's), from safetensors only."""
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ExternalModelError(f"{path}: not a safetensors file gradviz can read ({exc}); gradviz never "
                                 "unpickles weights: save them with safetensors.torch.save_file") from None
    expected = {k: tuple(v.shape) for k, v in model.net.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    if expected != found:
        diff = sorted(set(expected.items()) ^ set(found.items()))[:4]
        raise ExternalModelError(f"{path}: the weights do not fit the network (first differences {diff})")
    model.net.load_state_dict(state)


def _check_gradient(model: nn.Module, spec: ModelSpec) -> None:
    channels, height, width = input_shape(spec.dataset)
    x = torch.rand(2, channels, height, width, generator=torch.Generator().manual_seed(1), requires_grad=True)
    with evaluating(model):
        try:
            grad, = torch.autograd.grad(model(x).logsumexp(1).sum(), x)
        except RuntimeError as exc:
            raise ExternalModelError(f"the model's output cannot be differentiated with respect to its input "
                                     f"({exc}); saliency and attacks need that") from None
    if not torch.isfinite(grad).all():
        raise ExternalModelError("the model's input gradient is not finite")


def compare_with_onnxruntime(path: Path, module: nn.Module, shape: tuple[int, ...]) -> None:
    """Refuse a conversion whose outputs differ from onnxruntime's on sample inputs, naming the first operator
    whose own output differs (every node's output is compared, in graph order)."""
    import onnx
    import onnxruntime

    x = torch.rand(2, *shape, generator=torch.Generator().manual_seed(2))
    graph = onnx.load(str(path))
    session = onnxruntime.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: x.numpy()}
    expected = session.run(None, feed)[0]
    with torch.no_grad():
        found = module(x).numpy()
    if found.shape == expected.shape and np.allclose(found, expected, **ONNX_TOLERANCE):
        return
    raise ExternalModelError(f"{path}: the converted model differs from onnxruntime (max |Δ| "
                             f"{_max_difference(found, expected)}); first operator that differs: "
                             f"{_first_differing_node(graph, module, x)}")


def _max_difference(a: np.ndarray, b: np.ndarray) -> str:
    return f"{np.abs(a - b).max():.3g}" if a.shape == b.shape else f"shapes {a.shape} vs {b.shape}"


def _first_differing_node(graph, module: nn.Module, x: torch.Tensor) -> str:
    """Every node's first output from onnxruntime, against the converted module's submodule of the same name."""
    import onnx
    import onnxruntime

    probe = onnx.ModelProto()
    probe.CopyFrom(graph)
    del probe.graph.output[:]
    names = [node.output[0] for node in graph.graph.node]
    probe.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names)
    session = onnxruntime.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    reference = dict(zip(names, session.run(None, {session.get_inputs()[0].name: x.numpy()})))
    outputs = _fx_outputs(module, x)
    for node in graph.graph.node:
        mine = outputs.get(node.name.lstrip("/"))
        ref = reference[node.output[0]]
        if mine is not None and (mine.shape != ref.shape or not np.allclose(mine, ref, **ONNX_TOLERANCE)):
            return f"{node.op_type} (node {node.name!r}, max |Δ| {_max_difference(mine, ref)})"
    return "none singly; the differences add up across operators"


def _fx_outputs(module: nn.Module, x: torch.Tensor) -> dict[str, np.ndarray]:
    """What each called submodule of an onnx2torch GraphModule returned, by its (sanitised ONNX node) name."""
    outputs: dict[str, np.ndarray] = {}
    hooks = [m.register_forward_hook(lambda _m, _i, out, name=name: outputs.__setitem__(
        name, out.detach().numpy()) if isinstance(out, torch.Tensor) else None)
        for name, m in module.named_modules() if name]
    try:
        with torch.no_grad():
            module(x)
    finally:
        for hook in hooks:
            hook.remove()
    return outputs


@torch.no_grad()
def _accuracy(model: nn.Module, dataset: str) -> tuple[float | None, int]:
    try:
        x, y = load_dataset(dataset, "test")
    except DatasetNotFound:
        return None, 0
    x, y = x[:ACCURACY_IMAGES], y[:ACCURACY_IMAGES]
    correct = sum(int((model(x[i:i + 250]).argmax(1) == y[i:i + 250]).sum()) for i in range(0, len(x), 250))
    return correct / len(x), len(x)


def register_model(spec: ModelSpec, directory: Path | None = None, replace: bool = False) -> Path:
    """Register `spec` in `directory` (the user model folder by default); returns its card's path."""
    directory = directory or user_model_dir()
    safe_name(spec.name, "model name")
    refuse_zoo_name(spec.name)
    card_path = path_inside(directory, spec.name, CARD_SUFFIX, what="model name")
    if card_path.exists() and not replace:
        raise ExternalModelError(f"a model named {spec.name!r} exists already (pass --replace to replace it)")
    source = spec.source()
    if source == "import":
        import_base(spec.import_path)  # imports it: a failure is named before anything else
    names = class_names(spec.dataset)
    directory.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=directory, prefix=".registering."))
    try:
        staged = _stage_file(spec, source, staging)
        weights = (lambda model: _load_weights(model, Path(spec.weights))) if spec.weights else None
        model = frame(_base(spec, source, staged), input_shape(spec.dataset), len(names), spec.dataset, staging,
                      spec.mean, spec.std, prepare=weights)
        if staged is not None and source == "onnx":
            compare_with_onnxruntime(staged, onnx_module(staged), input_shape(spec.dataset))
        _check_gradient(model, spec)
        accuracy, n_test = _accuracy(model, spec.dataset)
        card = {"name": spec.name, "dataset": spec.dataset, "defense": "imported", "origin_source": source,
                "class_names": names, "architecture": describe(model), "clean_test_accuracy": accuracy,
                "n_test": n_test, "imported_from": str(spec.import_path or Path(spec.torchscript or spec.onnx).name),
                "versions": {"gradviz": __version__, "torch": torch.__version__},
                "created": datetime.now(UTC).isoformat(timespec="seconds")}
        if staged is not None:  # checked: the file joins the folder, then the card that names it
            os.replace(staged, directory / staged.name)
        return save_model(model, card, directory)
    except ExternalModelError as exc:  # name the user's file, not its staged copy
        given = str(spec.torchscript or spec.onnx or "")
        raise ExternalModelError(str(exc).replace(str(staging / f"{spec.name}{FILE_SUFFIX.get(source, '')}"),
                                                  given)) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _stage_file(spec: ModelSpec, source: str, staging: Path) -> Path | None:
    """Copy a TorchScript or ONNX file into the staging folder, under the name the card will give it."""
    if source == "import":
        return None
    given = Path(spec.torchscript or spec.onnx)
    if not given.is_file():
        raise ExternalModelError(f"{given}: no such file")
    target = path_inside(staging, spec.name, FILE_SUFFIX[source], what="model name")
    shutil.copyfile(given, target)
    return target
