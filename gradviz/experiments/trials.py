"""One experiment trial: train a model with gradviz's training loop, monitor it, checkpoint it, record it.

A trial knows nothing of Ray: `execute_trial` takes a `Reporter` (the Ray runner passes one that reports
through Ray Tune's metrics and checkpoint API; a sequential run passes one that only logs), so the same code
trains a zoo model in a benchmark, a test, or on a cluster. Everything a trial leaves behind lives in its
folder — status.json, metrics.jsonl (one line per report, kept across restarts and sessions), final.json —
and its checkpoint, so the Experiments page and `zoo status` read runs without talking to Ray.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Protocol

import psutil
import torch
from torch import nn

from gradviz.attacks.linf import single_step_sweep
from gradviz.data.datasets import channels, image_shape, load_dataset, num_classes
from gradviz.evaluation.runs.shortcut_check import ShortcutData
from gradviz.nets.checkpoints import CheckpointError, model_from_checkpoint, read_metadata
from gradviz.nets.store import atomic_write, load_model, round_to_stored, save_model
from gradviz.training.config import TrainConfig, run_steps, steps_per_epoch, total_steps
from gradviz.training.loop import accuracy, train_model, training_masks, training_split

MONITOR_EPS = (0.1, 0.2, 0.3, 0.4, 0.5)
EVALUATIONS = ("monitor", "shortcut")
SHORTCUT_METRICS = {"accuracy": "accuracy", "accuracy without the shortcut": "shortcut_free_accuracy",
                    "share of |gradient| on the marked region": "wrong_region_share",
                    "follows the swatch": "follows_shortcut"}
STALE_SECONDS = 600  # a "running" trial on another host silent this long was interrupted


@dataclass(frozen=True)
class Trial:
    """Everything one trial needs, as plain data that crosses process and node boundaries."""

    name: str
    settings: dict  # TrainConfig fields, less device/data_dir/name
    folder: str  # the trial's own folder: status, metrics, final result
    checkpoint: str  # the run's checkpoint file (kept across sessions until the model is saved)
    out_dir: str  # where the finished model goes
    eval_split: str = "test"  # "holdout": the run's held-out training digits; "test": first eval_n test digits
    eval_n: int = 1000
    transfer_source: str | None = None  # card path of the model whose FGSM examples are transferred
    transfer_checkpoint: str | None = None  # the source's own run checkpoint, used until its card exists
    depends_on: tuple[str, ...] = ()
    checkpoint_every: int | None = None  # steps; None: checkpoints_per_epoch times an epoch
    checkpoints_per_epoch: int = 1
    group: dict = field(default_factory=dict)  # sweep, λ and seed, for tables and plots
    stored_dtype: str = "float32"  # the precision the finished model is saved at
    evaluation: str = "monitor"  # "shortcut": also the shortcut check on the first eval_n test images (0: all)

    def config(self, device: str = "cpu") -> TrainConfig:
        """The run's config; recipes opt in to the penalty's fast path, which takes our own PaperCNN on the CPU and
        refuses anything else (a `model` from outside, a GPU), said once, for plain autograd."""
        return TrainConfig(**self.settings, name=self.name, device=device, fast_penalty=True)

    def to_dict(self) -> dict:
        return {**asdict(self), "depends_on": list(self.depends_on)}

    @classmethod
    def from_dict(cls, data: dict) -> Trial:
        known = {f.name for f in fields(cls)}
        return cls(**{k: (tuple(v) if k == "depends_on" else v) for k, v in data.items() if k in known})


class Reporter(Protocol):
    """Where a trial's metrics and checkpoints go (Ray Tune, or nowhere but the trial folder)."""

    def restore(self, checkpoint: Path) -> bool: ...

    def report(self, metrics: dict, checkpoint: Path | None = None) -> None: ...


class LocalReporter:
    """A reporter for runs outside Ray: the trial folder is the whole record."""

    def restore(self, checkpoint: Path) -> bool:
        return False

    def report(self, metrics: dict, checkpoint: Path | None = None) -> None:
        pass


def write_status(trial: Trial, state: str, **extra) -> None:
    folder = Path(trial.folder)
    folder.mkdir(parents=True, exist_ok=True)
    status = {"name": trial.name, "state": state, "updated": time.time(), "pid": os.getpid(),
              "host": os.uname().nodename, **extra}
    atomic_write(folder / "status.json", lambda p: p.write_text(json.dumps(status, indent=1)))


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def read_metrics(folder: str | Path) -> list[dict]:
    """A trial's reports in order; after a restart, rows re-done from the checkpoint replace the earlier ones."""
    path = Path(folder) / "metrics.jsonl"
    rows: dict[int, dict] = {}
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut off by a killed process
        rows = {s: r for s, r in rows.items() if s < row["step"]}
        rows[row["step"]] = row
    return [rows[s] for s in sorted(rows)]


def run_state(folder: Path, checkpoint: Path, settings: dict | None = None) -> dict:
    """Where a trial stands, from its folder alone: pending, running, finished, failed or interrupted, and
    whether a checkpoint makes it resumable. `settings`, when given, must match a finished result."""
    status = read_json(folder / "status.json") or {}
    final = finished_result(folder, settings)
    state = status.get("state", "pending")
    if final is not None:
        state = "finished"
    elif state == "running" and not _alive(status):
        state = "interrupted"
    if state in ("pending", "interrupted", "failed") and checkpoint.is_file():
        state = "resumable" if state == "pending" else f"{state}, resumable"
    latest: dict = {}
    for row in read_metrics(folder):  # the newest value of every metric (not every report evaluates)
        latest |= row
    if state == "finished":  # its status may be older than its result (written by a restart, say)
        status = {**status, **{k: final["metrics"].get(k) for k in ("step", "steps")}}
    return {"name": folder.name, "state": state, "step": status.get("step", 0), "steps": status.get("steps"),
            "error": status.get("error"), "updated": status.get("updated"), "metrics": latest,
            "group": (final or {}).get("group") or {}, "card": (final or {}).get("card")}


def _alive(status: dict) -> bool:
    """Whether a trial that says it is running still is: its process lives (same host), or it spoke lately."""
    if status.get("host") == os.uname().nodename and status.get("pid"):
        return psutil.pid_exists(int(status["pid"]))
    return time.time() - status.get("updated", 0) < STALE_SECONDS


class Monitor:
    """Held-out accuracy and accuracy on FGSM examples transferred from a source model.

    The source is its finished model when that exists; while the source is itself still training (the
    paper-scale pair trains side by side), its latest checkpoint stands in, and the examples are remade
    whenever that checkpoint moves on. Each report says which source step its transfer numbers came from.
    """

    def __init__(self, trial: Trial, config: TrainConfig, held_out: tuple[torch.Tensor, torch.Tensor]):
        if trial.eval_split == "holdout":
            self.x, self.y = held_out[0][:trial.eval_n], held_out[1][:trial.eval_n]
        else:
            x, y = load_dataset(config.dataset, "test", config.data_dir)
            self.x, self.y = x[:trial.eval_n], y[:trial.eval_n]
        self.trial, self.dataset = trial, config.dataset
        self.adversarial: dict[float, torch.Tensor] = {}
        self.source_step: int | str | None = None  # "final", a checkpoint's step, or None (no source yet)

    def _refresh_source(self) -> None:
        """Remake the transferred examples if the source moved on since they were made."""
        card, ckpt = self.trial.transfer_source, self.trial.transfer_checkpoint
        if not len(self.x) or self.source_step == "final":
            return
        if card and Path(card).is_file():
            model, _ = load_model(card)
            self._make(model, "final")
        elif ckpt and Path(ckpt).is_file():
            try:
                step = int(read_metadata(ckpt)["step"])
                if step != self.source_step:
                    self._make(model_from_checkpoint(ckpt, image_shape(self.dataset), num_classes(self.dataset),
                                                     channels(self.dataset)),
                               step)
            except (CheckpointError, OSError, KeyError, ValueError):
                return  # the source is mid-write or gone: keep the examples made last time

    def _make(self, model: nn.Module, step: int | str) -> None:
        self.adversarial = single_step_sweep(model.eval(), self.x, self.y, MONITOR_EPS)
        self.source_step = step

    def __call__(self, model: nn.Module) -> dict:
        if not len(self.x):
            return {}
        with torch.random.fork_rng(devices=[]):  # building the source model draws random weights: never the run's
            self._refresh_source()
        metrics = {"accuracy": accuracy(model, self.x, self.y)}
        if self.adversarial:
            metrics["transfer_source_step"] = self.source_step
        return metrics | {f"transfer@{e:g}": accuracy(model, adv, self.y) for e, adv in self.adversarial.items()}


class _LossMeter:
    """Mean training loss and cross-entropy since the last report."""

    def __init__(self):
        self.sums, self.count = {"loss": 0.0, "ce": 0.0}, 0

    def __call__(self, step: int, steps: int, stats: dict) -> None:
        for key in self.sums:
            self.sums[key] += stats[key]
        self.count += 1

    def take(self) -> dict:
        """The means since the last take, and start counting afresh."""
        means = {f"train_{k}": v / self.count for k, v in self.sums.items()} if self.count else {}
        self.sums, self.count = dict.fromkeys(self.sums, 0.0), 0
        return means


def _append_metrics(trial: Trial, row: dict) -> None:
    with open(Path(trial.folder) / "metrics.jsonl", "a") as fh:
        fh.write(json.dumps(row) + "\n")


def _run_step(phase: str, step: int, phase_steps: int) -> int:
    """A step counted over the whole run: a distillation student's steps follow the teacher's."""
    return step + (phase_steps if phase == "student" else 0)


def _resumed_step(checkpoint: Path, phase_steps: int) -> int:
    if not checkpoint.is_file():
        return 0
    meta = read_metadata(checkpoint)
    return _run_step(meta["phase"], int(meta["step"]), phase_steps)


def finished_result(folder: Path, settings: dict | None = None) -> dict | None:
    """A trial's final.json, if it finished (with these settings, when given)."""
    final = read_json(folder / "final.json")
    return final if final is not None and (settings is None or final.get("settings") == settings) else None


def execute_trial(trial: Trial, reporter: Reporter, device: str = "cpu") -> dict:
    """Train (or resume) one trial to the end and save its model; returns its final metrics.

    Resumes from the reporter's checkpoint (Ray's, after a worker or node died) or else from the trial's own
    checkpoint file (a run cut off in an earlier session); a trial whose final result exists is not redone.
    """
    folder, checkpoint = Path(trial.folder), Path(trial.checkpoint)
    finished = finished_result(folder, trial.settings)
    if finished is not None:
        reporter.report(finished["metrics"])
        return finished["metrics"]
    folder.mkdir(parents=True, exist_ok=True)
    reporter.restore(checkpoint)
    config = trial.config(device)
    try:
        return _train(trial, config, reporter, checkpoint)
    except Exception as exc:  # recorded, then re-raised for Ray to retry or report
        write_status(trial, "failed", error=f"{type(exc).__name__}: {exc}")
        raise


def as_stored(model: nn.Module, card: dict, stored_dtype: str) -> dict:
    """Round `model` (in place) to the precision it will be stored at and re-measure its clean accuracy there, so
    the card's number is the one the saved file gives; the full-precision number is kept beside it."""
    if stored_dtype == "float32":
        return card
    round_to_stored(model, stored_dtype)
    x, y = load_dataset(card["dataset"], "test")
    return {**card, "stored_dtype": stored_dtype, "float32_clean_test_accuracy": card["clean_test_accuracy"],
            "clean_test_accuracy": accuracy(model, x, y)}


def _final_evaluation(trial: Trial, config: TrainConfig, model: nn.Module) -> dict:
    """What a trial measures once it is done, beyond the monitor: the shortcut check for annotation curves."""
    if trial.evaluation == "monitor":
        return {}
    if trial.evaluation != "shortcut":
        raise ValueError(f"unknown trial evaluation {trial.evaluation!r}; use {' or '.join(EVALUATIONS)}")
    return shortcut_metrics(ShortcutData.load(config.dataset, trial.eval_n or None, config.device), model)


def shortcut_metrics(data: ShortcutData, model: nn.Module) -> dict[str, float]:
    """The shortcut check's numbers under the keys trials and curves record them by."""
    measured = data.measure(model.eval())
    return {key: measured[label] for label, key in SHORTCUT_METRICS.items()}


def _train(trial: Trial, config: TrainConfig, reporter: Reporter, checkpoint: Path) -> dict:
    fit, held = training_split(config)
    phase_steps, steps = total_steps(config, len(fit[0])), run_steps(config, len(fit[0]))
    resumed_from = _resumed_step(checkpoint, phase_steps)
    write_status(trial, "running", step=resumed_from, steps=steps, resumed_from_step=resumed_from)
    monitor = Monitor(trial, config, held)
    per_epoch = steps_per_epoch(len(fit[0]), config.batch_size)
    every = trial.checkpoint_every or max(1, per_epoch // trial.checkpoints_per_epoch)
    meter, evaluated = _LossMeter(), [resumed_from // per_epoch]

    def on_checkpoint(phase: str, phase_step: int, _: int, model: nn.Module, path: Path) -> None:
        step = _run_step(phase, phase_step, phase_steps)
        row = {"step": step, "steps": steps, "epoch": step / per_epoch, "resumed_from_step": resumed_from,
               "time": time.time(), **meter.take()}
        if step // per_epoch > evaluated[0]:  # an epoch ended since the last report
            evaluated[0] = step // per_epoch
            row |= monitor(model)
        _append_metrics(trial, row)
        write_status(trial, "running", step=step, steps=steps, resumed_from_step=resumed_from)
        reporter.report(row, path)

    masks = training_masks(config)
    model, card = train_model(config, fit if masks is None else (*fit, masks), on_step=meter, progress=False,
                              checkpoint=checkpoint, checkpoint_every=every, resume=True, on_checkpoint=on_checkpoint)
    card = as_stored(model, card, trial.stored_dtype)
    final = {"step": steps, "steps": steps, "epoch": steps / per_epoch, "resumed_from_step": resumed_from,
             "time": time.time(), **meter.take(), **monitor(model), **_final_evaluation(trial, config, model),
             "clean_test_accuracy": card["clean_test_accuracy"], "final": True}
    card_path = save_model(model, {**card, **({"experiment": trial.group} if trial.group else {})}, trial.out_dir)
    checkpoint.unlink(missing_ok=True)
    _append_metrics(trial, final)
    record = {"settings": trial.settings, "metrics": final, "card": str(card_path), "group": trial.group}
    atomic_write(Path(trial.folder) / "final.json", lambda p: p.write_text(json.dumps(record, indent=1)))
    write_status(trial, "finished", step=steps, steps=steps, resumed_from_step=resumed_from)
    reporter.report(final)
    return final
