"""Training checkpoints: everything needed to continue a run exactly where it stopped, without pickle.

A checkpoint is one safetensors file: the model's (and a distillation teacher's) weights, the optimizer's
moment tensors and the random-number generators' states as tensors, plus JSON metadata (step, phase,
optimizer hyper-parameters, the run's config). It is written atomically, so a run killed mid-write leaves
the previous checkpoint intact.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from gradviz.nets.architecture import DIGIT_SHAPE, ZOO_WIDTH, PaperCNN
from gradviz.nets.store import atomic_write
from gradviz.paths import path_inside

SUFFIX = ".checkpoint.safetensors"
FORMAT = "gradviz-checkpoint-1"


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed: unreadable, or made by a different run configuration."""


@dataclass
class Checkpoint:
    """The state of a run between two steps."""

    config: dict
    phase: str
    step: int
    total_steps: int
    elapsed_seconds: float
    model: dict[str, torch.Tensor]
    optimizer: dict
    rng: dict[str, torch.Tensor]
    running: dict[str, float] = field(default_factory=dict)
    teacher: dict[str, torch.Tensor] | None = None


def checkpoint_path(directory: str | Path, name: str) -> Path:
    """Where the run called `name` keeps its checkpoint (a name that would leave `directory` is refused)."""
    return path_inside(directory, name, SUFFIX, what="run name")


def _flatten_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], list[dict]]:
    tensors = {}
    for param_id, slots in state["state"].items():
        for slot, value in slots.items():
            tensors[f"optimizer.{param_id}.{slot}"] = torch.as_tensor(value).detach().cpu().contiguous()
    groups = [{k: list(v) if isinstance(v, tuple) else v for k, v in g.items()} for g in state["param_groups"]]
    return tensors, groups


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], groups: list[dict]) -> dict:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        param_id, slot = key.split(".", 1)
        state.setdefault(int(param_id), {})[slot] = value
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in groups]
    return {"state": state, "param_groups": groups}


def save_checkpoint(path: str | Path, ckpt: Checkpoint) -> Path:
    """Write `ckpt` atomically to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    optimizer_tensors, groups = _flatten_optimizer(ckpt.optimizer)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in ckpt.model.items()}
    tensors |= {f"teacher.{k}": v.detach().cpu().contiguous() for k, v in (ckpt.teacher or {}).items()}
    tensors |= {f"rng.{k}": v.cpu().contiguous() for k, v in ckpt.rng.items()}
    tensors |= optimizer_tensors
    meta = {"format": FORMAT, "config": ckpt.config, "phase": ckpt.phase, "step": ckpt.step,
            "total_steps": ckpt.total_steps, "elapsed_seconds": ckpt.elapsed_seconds, "running": ckpt.running,
            "param_groups": groups, "has_teacher": ckpt.teacher is not None}
    atomic_write(path, lambda p: save_file(tensors, str(p), metadata={"gradviz": json.dumps(meta)}))
    return path


def read_metadata(path: str | Path) -> dict:
    """A checkpoint's metadata (config, phase, step, …) without loading its tensors."""
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = json.loads((fh.metadata() or {}).get("gradviz", "{}"))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable gradviz checkpoint ({exc})") from exc
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a gradviz checkpoint (format {meta.get('format')!r})")
    return meta


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint written by save_checkpoint."""
    meta = read_metadata(path)
    tensors = load_file(str(path))

    def part(prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

    return Checkpoint(config=meta["config"], phase=meta["phase"], step=meta["step"],
                      total_steps=meta["total_steps"], elapsed_seconds=meta["elapsed_seconds"],
                      model=part("model."), optimizer=_unflatten_optimizer(part("optimizer."), meta["param_groups"]),
                      rng=part("rng."), running=meta["running"],
                      teacher=part("teacher.") if meta["has_teacher"] else None)


def model_from_checkpoint(path: str | Path, image_shape: tuple[int, int] = DIGIT_SHAPE,
                          num_classes: int = 10, channels: int = 1) -> nn.Module:
    """The model of an unfinished run as it stands at its checkpoint (a distillation's student), in eval mode;
    `image_shape`, `num_classes` and `channels` are its dataset's (gradviz.data.classes). A run of a model from
    outside (`model` in its settings) is rebuilt the way training built it (gradviz.nets.external)."""
    ckpt = load_checkpoint(path)
    config = ckpt.config
    if config.get("model"):
        from gradviz.nets.external import outside_model

        model = outside_model(config["model"], config.get("model_kwargs"), config["dataset"],
                              (channels, *image_shape), num_classes)
    else:
        model = PaperCNN(width=config.get("width", ZOO_WIDTH), layers=config.get("layers", "zoo"),
                         image_shape=image_shape, num_classes=num_classes)
    model.load_state_dict(ckpt.model)
    return model.eval()


def list_checkpoints(directory: str | Path) -> list[dict]:
    """Interrupted runs in `directory`: each checkpoint's metadata plus its path, newest first."""
    found = []
    for path in Path(directory).glob(f"*{SUFFIX}"):
        try:  # a run that finishes meanwhile deletes its checkpoint: skip it, do not fail
            found.append({**read_metadata(path), "path": str(path), "mtime": path.stat().st_mtime})
        except (CheckpointError, FileNotFoundError):
            continue
    return sorted(found, key=lambda c: c["mtime"], reverse=True)
