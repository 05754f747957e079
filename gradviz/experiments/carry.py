"""Runs that outlive their machine: a long trial packed into the checkout, unpacked on a fresh machine.

A paper-scale run takes longer than a session, and the next session may get a new machine with nothing under
~/.cache (it happened twice: 22 core-hours of the paper-scale pair were lost). The checkout is the one thing that
travels, so `pack` copies what a trial has into carried/DATASET/NAME/ there — its metrics, and either its finished
model (rounded to float16, the zoo's precision, with clean accuracy re-measured) or its latest checkpoint — and
`unpack`, which `zoo build` calls before it trains, puts them back where the build looks when this machine has
nothing newer.

A carried checkpoint is gzip'd, and Adam's moments in it are rounded to bfloat16: that keeps the pair inside
the 64 MiB a working tree may have when it travels to a GPU machine (float32 moments would not fit). Resuming
from it is therefore not bit-exact: every moment is off by at most 2⁻⁹ of itself, a one-time change far
smaller than a batch's own noise; the weights, the random-number generators and the step count are exact.
"""
from __future__ import annotations

import gzip
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch

from gradviz.experiments.trials import Trial, as_stored, finished_result, read_json, read_metrics
from gradviz.nets.cards import CARD_SUFFIX, card_fields
from gradviz.nets.checkpoints import load_checkpoint, read_metadata, save_checkpoint
from gradviz.nets.store import atomic_write, load_model, save_model, sha256_file
from gradviz.paths import path_inside

FORMAT = "gradviz-carry-1"
MANIFEST = "carried.json"
CHECKPOINT = "checkpoint.safetensors.gz"
MOMENTS_DTYPE = torch.bfloat16
MOMENT_SLOTS = ("exp_avg", "exp_avg_sq")
MAX_CHECKPOINT_BYTES = 1 << 30  # a carried checkpoint unpacks to at most this (a gzip bomb stops here)


class CarryError(ValueError):
    """A carried run that cannot be used: damaged, or made by other settings."""


def carry_folder(root: str | Path, name: str) -> Path:
    """Where the run called `name` is carried (a name that would leave `root` is refused)."""
    return path_inside(root, name, what="run name")


def manifest(root: str | Path, name: str) -> dict | None:
    """What is carried for `name`, or None."""
    return read_json(carry_folder(root, name) / MANIFEST)


def pack(trial: Trial, root: str | Path, stored_dtype: str = "float16") -> dict | None:
    """Carry `trial` as it stands on this machine into root/NAME/; returns the manifest, or None when the
    trial has neither a finished model nor a checkpoint here."""
    folder = carry_folder(root, trial.name)
    final = finished_result(Path(trial.folder), trial.settings)
    if final is None and not Path(trial.checkpoint).is_file():
        return None
    Path(root).mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root, prefix=f".{trial.name}."))
    try:
        entry = _pack_model(final, staging, stored_dtype) if final else _pack_checkpoint(Path(trial.checkpoint), staging)
        metrics = Path(trial.folder) / "metrics.jsonl"
        if metrics.is_file():
            shutil.copyfile(metrics, staging / "metrics.jsonl")
        entry = {"format": FORMAT, "name": trial.name, "settings": trial.settings, "packed": time.time(), **entry,
                 "files": {p.name: sha256_file(p) for p in sorted(staging.iterdir())}}
        (staging / MANIFEST).write_text(json.dumps(entry, indent=1) + "\n")
        shutil.rmtree(folder, ignore_errors=True)
        staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return entry


def _pack_model(final: dict, staging: Path, stored_dtype: str) -> dict:
    model, card = load_model(final["card"])
    card = card_fields(card)
    card = as_stored(model, card, stored_dtype)
    save_model(model, card, staging)
    record = {**final, "card": None, "metrics": {**final["metrics"], "clean_test_accuracy": card["clean_test_accuracy"]}}
    (staging / "final.json").write_text(json.dumps(record, indent=1))
    return {"state": "finished", "step": final["metrics"]["step"], "steps": final["metrics"]["steps"],
            "stored_dtype": stored_dtype, "clean_test_accuracy": card["clean_test_accuracy"],
            "float32_clean_test_accuracy": card.get("float32_clean_test_accuracy", card["clean_test_accuracy"])}


def _pack_checkpoint(checkpoint: Path, staging: Path) -> dict:
    ckpt = load_checkpoint(checkpoint)
    _cast_moments(ckpt.optimizer, MOMENTS_DTYPE)
    plain = staging / "checkpoint.safetensors"
    save_checkpoint(plain, ckpt)
    with open(plain, "rb") as src, gzip.open(staging / CHECKPOINT, "wb", compresslevel=6) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    plain.unlink()
    return {"state": "checkpoint", "step": ckpt.step, "steps": ckpt.total_steps, "phase": ckpt.phase,
            "elapsed_seconds": ckpt.elapsed_seconds, "moments_dtype": str(MOMENTS_DTYPE).removeprefix("torch.")}


def _cast_moments(optimizer: dict, dtype: torch.dtype) -> None:
    for slots in optimizer["state"].values():
        for slot in MOMENT_SLOTS:
            if slot in slots:
                slots[slot] = slots[slot].to(dtype)


def unpack(trial: Trial, root: str | Path) -> str | None:
    """Put what is carried for `trial` where a build looks, unless this machine has the same or newer; returns a
    line saying what was restored, or None. Carried files are checked against their manifest first."""
    entry = manifest(root, trial.name)
    if entry is None or finished_result(Path(trial.folder), trial.settings) is not None:
        return None
    folder = carry_folder(root, trial.name)
    _check(entry, folder, trial)
    if entry["state"] == "finished":
        return _unpack_model(trial, folder, entry)
    if _local_step(Path(trial.checkpoint)) >= entry["step"]:
        return None
    _unpack_checkpoint(folder / CHECKPOINT, Path(trial.checkpoint))
    _restore_metrics(folder, trial, entry["step"])
    return f"{trial.name}: resumes from its carried checkpoint, step {entry['step']:,}/{entry['steps']:,} ({folder})"


def _check(entry: dict, folder: Path, trial: Trial) -> None:
    if entry.get("format") != FORMAT:
        raise CarryError(f"{folder}: not a carried gradviz run (format {entry.get('format')!r})")
    if entry.get("settings") != trial.settings:
        raise CarryError(f"{folder}: carried with other settings than the recipe's {trial.name} entry; delete the "
                         "folder to train it afresh")
    for name, digest in entry["files"].items():
        path = path_inside(folder, name, what="carried file")
        if not path.is_file() or sha256_file(path) != digest:
            raise CarryError(f"{path}: missing or changed since it was carried (sha256 differs)")


def _local_step(checkpoint: Path) -> int:
    return int(read_metadata(checkpoint)["step"]) if checkpoint.is_file() else -1


def _unpack_model(trial: Trial, folder: Path, entry: dict) -> str:
    model, card = load_model(folder / f"{trial.name}{CARD_SUFFIX}")  # checks the weights against the card
    card = card_fields(card)
    card_path = save_model(model, card, trial.out_dir)
    final = json.loads((folder / "final.json").read_text())
    _restore_metrics(folder, trial, entry["step"])
    Path(trial.folder, "final.json").write_text(json.dumps({**final, "card": str(card_path)}, indent=1))
    return (f"{trial.name}: finished on another machine; its carried model (stored {entry['stored_dtype']}, clean "
            f"{entry['clean_test_accuracy']:.4f}) is at {card_path}")


def _unpack_checkpoint(carried: Path, checkpoint: Path) -> None:
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=checkpoint.parent) as tmp:
        plain = Path(tmp) / "checkpoint.safetensors"
        with gzip.open(carried, "rb") as src, open(plain, "wb") as dst:
            while block := src.read(1 << 20):
                if dst.tell() + len(block) > MAX_CHECKPOINT_BYTES:
                    raise CarryError(f"{carried}: unpacks to more than {MAX_CHECKPOINT_BYTES:,} bytes; refused")
                dst.write(block)
        ckpt = load_checkpoint(plain)
        _cast_moments(ckpt.optimizer, torch.float32)
        save_checkpoint(checkpoint, ckpt)


def _restore_metrics(folder: Path, trial: Trial, step: int) -> None:
    """The carried metrics, less any rows past the carried step (they are trained again)."""
    rows = [r for r in read_metrics(folder) if r["step"] <= step]
    Path(trial.folder).mkdir(parents=True, exist_ok=True)
    atomic_write(Path(trial.folder) / "metrics.jsonl",
                 lambda p: p.write_text("".join(json.dumps(r) + "\n" for r in rows)))
