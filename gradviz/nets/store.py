"""Models on disk: safetensors weights beside a JSON model card, written atomically, loaded with checks.

Nothing here ever unpickles a file: weights load through safetensors only, after the file's sha256 has
been compared with its card.
"""
from __future__ import annotations

import json
import secrets
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from gradviz.files import atomic_write, sha256_file
from gradviz.nets.architecture import build_model
from gradviz.nets.cards import CARD_SUFFIX, ModelFileError, list_models, read_card
from gradviz.paths import path_inside

WEIGHTS_SUFFIX = ".safetensors"
STORED_DTYPES = {"float32": torch.float32, "float16": torch.float16}  # a card's `stored_dtype`; models load as float32
_PICKLE_MAGICS = (b"PK\x03\x04", b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


def read_cached_json(path: Path | None, valid: Callable[[object], bool]) -> object | None:
    """A cache entry written by atomic_write, or None to compute it: absent, or unreadable or not `valid` (a
    truncated or damaged file is reported, removed and recomputed, never reused)."""
    if path is None or not path.is_file():
        return None
    try:
        value = json.loads(path.read_text())
        if valid(value):
            return value
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        pass
    warnings.warn(f"{path}: a damaged cache entry; it is computed again", stacklevel=3)
    path.unlink(missing_ok=True)
    return None


def stored_state(model: nn.Module, stored_dtype: str = "float32") -> dict[str, torch.Tensor]:
    """The tensors a model is saved as: floating-point ones in `stored_dtype` (float16 halves the file; a model
    always loads as float32), the rest (batch norm's counters) as they are."""
    if stored_dtype not in STORED_DTYPES:
        raise ValueError(f"unknown stored_dtype {stored_dtype!r}; use {' or '.join(STORED_DTYPES)}")
    dtype = STORED_DTYPES[stored_dtype]
    return {k: (v.to(dtype) if v.is_floating_point() else v).detach().cpu().contiguous()
            for k, v in model.state_dict().items()}


def round_to_stored(model: nn.Module, stored_dtype: str) -> nn.Module:
    """`model` (in place, returned) holding exactly what a file stored in `stored_dtype` gives back, so a number
    measured on it is the number the saved file gives."""
    model.load_state_dict(stored_state(model, stored_dtype))
    return model


def save_model(model: nn.Module, card: dict, directory: str | Path) -> Path:
    """Save weights then card (the card is what makes a model visible), both atomically; returns the card path.
    A card's `stored_dtype` ("float16") stores the weights at that precision.

    Weights and card change as one unit: a model saved over an existing one gets its weights under a new file
    name, then the card that points at them, and only then is the old weights file removed, so a crash at any
    moment leaves the old model or the new one, never a card whose weights do not match."""
    directory = Path(directory)
    name = card["name"]
    card_path = path_inside(directory, name, CARD_SUFFIX, what="model name")
    directory.mkdir(parents=True, exist_ok=True)
    state = stored_state(model, card.get("stored_dtype", "float32"))
    old = _current_weights(card_path)
    weights = path_inside(directory, name, WEIGHTS_SUFFIX, what="model name")
    if weights.exists():
        weights = directory / f"{name}.{secrets.token_hex(6)}{WEIGHTS_SUFFIX}"
    atomic_write(weights, lambda p: save_file(state, str(p), metadata={"name": name}))
    card = {**card, "weights_file": weights.name, "sha256": sha256_file(weights),
            "size_bytes": weights.stat().st_size}
    atomic_write(card_path, lambda p: p.write_text(json.dumps(card, indent=2, sort_keys=True) + "\n"))
    if old is not None and old != weights and old.parent == directory:
        old.unlink(missing_ok=True)
    return card_path


def _current_weights(card_path: Path) -> Path | None:
    """The weights file an existing card points at (None when there is no readable card)."""
    try:
        return card_path.parent / Path(read_card(card_path)["weights_file"]).name
    except ModelFileError:
        return None


def _resolve_card(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if path.suffix == WEIGHTS_SUFFIX:
        path = path.with_suffix(CARD_SUFFIX)
    if path.suffix == CARD_SUFFIX and path.is_file():
        return path
    if path.suffix not in (CARD_SUFFIX, WEIGHTS_SUFFIX, "") and path.exists():
        raise ModelFileError(f"{path}: gradviz loads only safetensors weights with a JSON card beside them")
    for card in list_models():
        if card["name"] == str(name_or_path):
            return Path(card["card_path"])
    known = ", ".join(c["name"] for c in list_models()) or "none"
    raise ModelFileError(f"no model named {str(name_or_path)!r}; known models: {known}")


def _check_weights_file(path: Path, card: dict) -> None:
    if not path.is_file():
        raise ModelFileError(f"{path}: weights file missing")
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head.startswith(_PICKLE_MAGICS):
        raise ModelFileError(f"{path}: this is a pickle/torch.save file; gradviz refuses to unpickle weights")
    if card.get("sha256") != sha256_file(path):
        raise ModelFileError(f"{path}: sha256 does not match its model card (file changed or tampered with)")


def load_model(name_or_path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """A model in eval mode and its card, from a zoo name, a user model name, or a card/weights path."""
    card = read_card(_resolve_card(name_or_path))
    weights = Path(card["card_path"]).parent / card["weights_file"]
    _check_weights_file(weights, card)
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFileError(f"{weights}: not a valid safetensors file ({exc})") from exc
    model = build_model(card["architecture"], Path(card["card_path"]).parent)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    if expected != found:
        diff = sorted(set(expected.items()) ^ set(found.items()))[:4]
        raise ModelFileError(f"{weights}: tensors do not match architecture {card['architecture']}: {diff}")
    model.load_state_dict(state)  # copies into the float32 parameters, whatever precision the file stores
    return model.to(device).eval(), card
