"""Train any of the paper's defenses, with a progress bar, deterministically for a seed on CPU."""
from __future__ import annotations

import math
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gradviz import __version__
from gradviz.data.annotations import Annotations, load_annotations
from gradviz.data.datasets import (
    dataset_hashes,
    dataset_source,
    image_shape,
    input_shape,
    load_dataset,
    load_masks,
    num_classes,
    validation_split,
)
from gradviz.files import sha256_file
from gradviz.machine import device_description
from gradviz.nets.architecture import PaperCNN, channels_last, describe
from gradviz.nets.cards import free_user_name, refuse_zoo_name
from gradviz.nets.checkpoints import Checkpoint, CheckpointError, load_checkpoint, read_metadata, save_checkpoint
from gradviz.nets.external import outside_model
from gradviz.nets.store import load_model, save_model
from gradviz.paths import user_model_dir
from gradviz.progress import progress_bar
from gradviz.training.config import TrainConfig, steps_per_epoch, total_steps
from gradviz.training.defenses import LossSettings, batch_loss, defense_spec
from gradviz.training.fast_penalty import FastPenalty, fast_penalty_for
from gradviz.training.penalties import NORMALISATION, to_reference_lambda

StepCallback = Callable[[int, int, dict], None]
CheckpointCallback = Callable[[str, int, int, nn.Module, Path], None]  # (phase, step, steps, model, checkpoint file)
HOLDOUT_SEED = 0  # one validation split for every seed of a sweep, so candidates are scored on the same digits


class TrainingCancelled(RuntimeError):
    """Raised when a caller's should_stop() asks to end training; nothing is saved."""


def _seed_everything(seed: int) -> None:
    # Strongly regularized models drive second-order terms into denormal floats, which run far slower
    # on CPUs; flushing them to zero changes nothing measurable in the result.
    torch.set_flush_denormal(True)
    torch.manual_seed(seed)
    np.random.seed(seed)


def random_shift(x: torch.Tensor, generator: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Translate each image by a random whole number of pixels (zero fill); cheap augmentation."""
    n = x.shape[0]
    shifts = torch.randint(-max_shift, max_shift + 1, (n, 2), generator=generator).to(x.device)
    theta = torch.zeros(n, 2, 3, device=x.device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    theta[:, :, 2] = -2 * shifts.float() / x.shape[-1]
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def training_split(config: TrainConfig) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """(fit, held-out) data of a run: the first `train_subset` training digits, less `holdout` of them held out
    (seeded, the same for every seed) for choosing settings; the test set is never part of either."""
    return _carve(config, *load_dataset(config.dataset, "train", config.data_dir))


def training_masks(config: TrainConfig) -> torch.Tensor | None:
    """The "not here" masks of training_split's fit images, in the same order: the run's annotation set where it
    names one (unannotated images get none), else the dataset's own masks (None for a dataset without)."""
    if config.annotations is not None:
        masks = torch.from_numpy(run_annotations(config).training_masks(len(load_dataset(
            config.dataset, "train", config.data_dir)[1])))
    else:
        masks = load_masks(config.dataset, "train", config.data_dir)
    return None if masks is None else _carve(config, masks, torch.zeros(len(masks)))[0][0]


def run_annotations(config: TrainConfig) -> Annotations:
    """The run's annotation set, checked against its dataset."""
    return load_annotations(config.annotations, config.dataset, image_shape(config.dataset))


def _carve(config: TrainConfig, x: torch.Tensor,
           y: torch.Tensor) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """The fit and held-out parts of any tensors aligned with the training split: the same subset, the same
    seeded hold-out, so images and their masks stay paired."""
    if config.train_subset is not None:
        x, y = x[:config.train_subset], y[:config.train_subset]
    if config.holdout >= len(x):
        raise ValueError(f"--holdout {config.holdout} leaves nothing to train on ({len(x)} digits)")
    if config.holdout == 0:  # keep the order: batches are drawn by index, so reordering would change every run
        return (x, y), (x[:0], y[:0])
    return validation_split(x, y, config.holdout, seed=HOLDOUT_SEED)


def batch_index(n: int, batch_size: int, seed: int, step: int) -> torch.Tensor:
    """Indices of the mini-batch of 1-based `step`: a fresh seeded shuffle each epoch, short last batch dropped.

    A pure function of (seed, step), so a resumed run draws exactly the batches an uninterrupted one would.
    """
    epoch, k = divmod(step - 1, steps_per_epoch(n, batch_size))
    order = _epoch_order(n, seed, epoch)
    return order[k * batch_size:(k + 1) * batch_size]


@lru_cache(maxsize=2)
def _epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


def learning_rate(config: TrainConfig, step: int, steps: int) -> float:
    """The learning rate of 1-based `step`: constant, or cosine-annealed from lr to 0 over the run."""
    if config.lr_schedule == "cosine":
        return config.lr * 0.5 * (1 + math.cos(math.pi * (step - 1) / steps))
    return config.lr


def penalty_weight(config: TrainConfig, step: int, steps: int) -> float:
    """λ at 1-based `step`: rises linearly from 0 over the first `lam_warmup` of the run, then stays."""
    ramp = config.lam_warmup * steps
    return config.lam if ramp <= 0 else config.lam * min(1.0, step / ramp)


@dataclass
class _Phase:
    """One optimisation run inside a training job (distillation has two: teacher, then student)."""

    name: str
    model: nn.Module
    settings: LossSettings
    teacher: nn.Module | None = None


@dataclass
class _Checkpointing:
    """Where and how often a run saves its state, and the state it resumes from."""

    path: Path | None
    every: int
    resume_from: Checkpoint | None
    identity: dict
    elapsed_before: float = 0.0
    started: float = field(default_factory=time.perf_counter)

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.started

    def save(self, phase: _Phase, step: int, steps: int, optimizer, augment: torch.Generator,
             running: dict) -> None:
        if self.path is None:
            return
        rng = {"torch": torch.get_rng_state(), "augment": augment.get_state()}
        teacher = phase.teacher.state_dict() if phase.teacher is not None else None
        save_checkpoint(self.path, Checkpoint(
            config=self.identity, phase=phase.name, step=step, total_steps=steps,
            elapsed_seconds=round(self.elapsed(), 1), model=phase.model.state_dict(),
            optimizer=optimizer.state_dict(), rng=rng, running=running, teacher=teacher))


def _fit(phase: _Phase, x: torch.Tensor, y: torch.Tensor, config: TrainConfig, ckpt: _Checkpointing,
         on_step: StepCallback | None, should_stop: Callable[[], bool] | None, progress: bool,
         on_checkpoint: CheckpointCallback | None = None, masks: torch.Tensor | None = None) -> dict:
    device = torch.device(config.device)
    augment = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.Adam(phase.model.parameters(), lr=config.lr, eps=1e-4)
    steps = total_steps(config, len(x))
    first, running = 1, {}
    resume = ckpt.resume_from
    if resume is not None and resume.phase == phase.name:
        phase.model.load_state_dict(resume.model)
        optimizer.load_state_dict(resume.optimizer)
        torch.set_rng_state(resume.rng["torch"])
        augment.set_state(resume.rng["augment"])
        first, running = resume.step + 1, dict(resume.running)
    phase.model.train()
    fast = _fast_path(phase, config)
    bar = progress_bar(steps, first - 1, phase.name, progress)
    for step in range(first, steps + 1):
        if should_stop is not None and should_stop():
            ckpt.save(phase, step - 1, steps, optimizer, augment, running)
            bar.close()
            raise TrainingCancelled(f"training cancelled at step {step - 1} of {steps}")
        index = batch_index(len(x), config.batch_size, config.seed, step)
        xb, yb = x[index].to(device), y[index].to(device)
        if config.augment:
            xb = random_shift(xb, augment)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, step, steps)
        settings = replace(phase.settings, lam=penalty_weight(config, step, steps))
        mb = masks[index].to(device) if masks is not None else None
        loss, stats = batch_loss(phase.model, xb, yb, settings, teacher=phase.teacher, mask=mb, fast=fast)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        running = {k: 0.95 * running.get(k, v) + 0.05 * v for k, v in stats.items()}
        bar.set_postfix({k: f"{v:.3g}" for k, v in running.items()}, refresh=False)
        bar.update()
        if on_step is not None:
            on_step(step, steps, stats)
        if step % ckpt.every == 0 and step < steps and ckpt.path is not None:
            ckpt.save(phase, step, steps, optimizer, augment, running)
            if on_checkpoint is not None:
                on_checkpoint(phase.name, step, steps, phase.model, ckpt.path)
                phase.model.train()
    bar.close()
    return running


def _fast_path(phase: _Phase, config: TrainConfig) -> FastPenalty | None:
    """The penalty's fast path when the run opted in (`fast_penalty`) and its defense has a penalty; a model it does
    not know gets plain autograd, said once on stderr."""
    if not config.fast_penalty or defense_spec(phase.settings.defense).penalised is None:
        return None
    return fast_penalty_for(phase.model, say=lambda message: print(message, file=sys.stderr))


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    """Clean accuracy in eval mode, batched, on the model's device."""
    model.eval()
    device = next(model.parameters()).device
    correct = sum(int((model(x[i:i + batch_size].to(device)).argmax(1).cpu() == y[i:i + batch_size]).sum())
                  for i in range(0, len(x), batch_size))
    return correct / max(1, len(x))


def _versions() -> dict:
    return {"gradviz": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version()}



def _new_model(config: TrainConfig) -> nn.Module:
    """A fresh model, channels-last on CPU, where every defense's step runs faster in that layout: the exact
    gradreg step too, since the fast path keeps it through both derivatives (gradviz.training.fast_penalty;
    benchmarks/train_step.py measures each). `config.model` names another architecture (gradviz.nets.external)."""
    if config.model is None:
        model = PaperCNN(width=config.width, layers=config.layers, image_shape=image_shape(config.dataset),
                         num_classes=num_classes(config.dataset))
    else:
        model = outside_model(config.model, config.model_kwargs, config.dataset, input_shape(config.dataset),
                              num_classes(config.dataset))
    model = model.to(config.device).train()
    return model if config.device != "cpu" else channels_last(model)


def _warm_start(model: nn.Module, config: TrainConfig) -> dict | None:
    """Copy the weights of `config.init_from` into `model`; returns what the card records about it."""
    if not config.init_from:
        return None
    source, card = load_model(config.init_from)
    if describe(source) != describe(model):
        raise ValueError(f"--init-from {config.init_from}: its architecture {describe(source)} differs from "
                         f"this run's {describe(model)}")
    if card.get("dataset") != config.dataset:
        raise ValueError(f"--init-from {config.init_from} was trained on {card.get('dataset')}, not {config.dataset}")
    model.load_state_dict(source.state_dict())
    return {"name": card["name"], "sha256": card["sha256"]}


def _open_checkpoint(config: TrainConfig, path: Path | None, resume: bool) -> Checkpoint | None:
    """The checkpoint to resume from, if asked and present; refuses to overwrite an interrupted run silently."""
    if path is None or not path.is_file():
        return None
    meta = read_metadata(path)
    if not resume:
        raise CheckpointError(f"{path} holds an interrupted run of this name ({meta['phase']} step {meta['step']} "
                              f"of {meta['total_steps']}): resume it (--resume) or delete the file to start over")
    ckpt = load_checkpoint(path)
    mine = config.settings()
    if ckpt.config != mine:
        differ = sorted(k for k in set(mine) | set(ckpt.config) if mine.get(k) != ckpt.config.get(k))
        raise CheckpointError(f"{path} was made by a different configuration (differs in {', '.join(differ)}); "
                              "resume with the same settings or delete it to start over")
    return ckpt


def train_model(config: TrainConfig, train_data: tuple[torch.Tensor, ...] | None = None,
                on_step: StepCallback | None = None, should_stop: Callable[[], bool] | None = None,
                progress: bool = True, checkpoint: str | Path | None = None, checkpoint_every: int = 250,
                resume: bool = False, on_checkpoint: CheckpointCallback | None = None) -> tuple[nn.Module, dict]:
    """Train one model and return it (eval mode) with its card; `train_data` (x, y) or (x, y, masks) overrides
    the train split (a masked defense needs the masks).

    With `checkpoint`, the run saves its whole state there every `checkpoint_every` steps (and when
    cancelled) and then calls `on_checkpoint` (an experiment runner reports metrics and the file there);
    `resume=True` continues from that file, giving the same final weights as an uninterrupted run.
    """
    config.validate()
    _seed_everything(config.seed)
    x, y, *rest = train_data if train_data is not None else (*training_split(config)[0], training_masks(config))
    masks = rest[0] if rest and defense_spec(config.defense).masked else None
    if defense_spec(config.defense).masked and masks is None:
        raise ValueError(f"defense {config.defense!r} needs annotation masks: pass train_data as (x, y, masks)")
    path = Path(checkpoint) if checkpoint is not None else None
    resumed = _open_checkpoint(config, path, resume)
    ckpt = _Checkpointing(path, max(1, checkpoint_every), resumed, config.settings(),
                          elapsed_before=resumed.elapsed_seconds if resumed else 0.0)
    teacher = None
    if defense_spec(config.defense).distils:  # teacher at temperature T first, then the student on its soft labels
        teacher = _new_model(config)
        if resumed is not None and resumed.phase == "student":
            teacher.load_state_dict(resumed.teacher)
        else:
            _fit(_Phase("teacher", teacher, config.loss_settings(teacher_phase=True)), x, y, config, ckpt,
                 on_step, should_stop, progress, on_checkpoint)
        teacher.eval()
    model = _new_model(config)
    init = _warm_start(model, config)
    phase = _Phase("student" if teacher is not None else config.defense, model, config.loss_settings(), teacher)
    final = _fit(phase, x, y, config, ckpt, on_step, should_stop, progress, on_checkpoint, masks)
    test_x, test_y = load_dataset(config.dataset, "test", config.data_dir)
    card = _card(config, model, final, ckpt.elapsed(), accuracy(model, test_x, test_y), len(test_x), len(x))
    card |= {"init_from": init, "resumed_at_step": resumed.step if resumed else None}
    if config.annotations is not None:
        card["annotations"] = {"file": Path(config.annotations).name, "sha256": sha256_file(Path(config.annotations)),
                               "images": len(run_annotations(config))}
    return model.eval(), card


def _card(config: TrainConfig, model: nn.Module, final: dict, seconds: float, test_acc: float,
          n_test: int, n_train: int) -> dict:
    return {
        **config.card_settings(),
        "name": config.name or config.default_name(),
        "data_source": dataset_source(config.dataset, config.data_dir),
        "data_sha256": dataset_hashes(config.dataset, config.data_dir),
        "n_train": n_train,
        "lam_normalisation": NORMALISATION,
        "lam_reference_units": to_reference_lambda(config.lam),
        "architecture": describe(model),
        "steps": total_steps(config, n_train),
        "final_train_stats": final,
        "clean_test_accuracy": test_acc,
        "n_test": n_test,
        "train_seconds": round(seconds, 1),
        "device": device_description(config.device),
        "versions": _versions(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def train_and_save(config: TrainConfig, out: str | Path | None = None, **kwargs) -> tuple[Path, dict]:
    """Train and write the model to `out` (default: the user model folder); returns the card path and card.

    A checkpoint passed on to train_model is deleted only once the finished model is safely on disk.
    """
    if out is None:  # a user model: its own name, or the default one stepped around the zoo's names
        config = replace(config, name=config.name or free_user_name(config.default_name()))
        refuse_zoo_name(config.name)
    model, card = train_model(config, **kwargs)
    path = save_model(model, card, out or user_model_dir())
    if kwargs.get("checkpoint") is not None:
        Path(kwargs["checkpoint"]).unlink(missing_ok=True)
    return path, card
