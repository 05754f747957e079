"""What several subcommands share: the help formatter, the attack-setting help, loading --models for --dataset."""
from __future__ import annotations

import argparse

from gradviz.attacks.registry import REGISTRY
from gradviz.nets.cards import require_dataset

PARAM_HELP = ("an attack's setting over its default, repeatable: " + "; ".join(
    f"{a.name}: {', '.join(f'{p.name} (default {p.default:g})' for p in a.params)}" for a in REGISTRY.values()
    if a.params))


def iterative_attacks() -> list[str]:
    return [a.name for a in REGISTRY.values() if a.multi_step and a.eps_bounded]


class Help(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a default only where it says something: not for flags, unset options or help that names one."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)


def models_of(args) -> tuple[dict, dict]:
    """--models loaded on --device (default cpu) as ({name: model}, {name: card}), all of --dataset."""
    from gradviz.nets.store import load_model

    loaded = {n: load_model(n, args.device or "cpu") for n in args.models.split(",") if n}
    cards = {n: c for n, (_, c) in loaded.items()}
    require_dataset(cards, args.dataset)
    return {n: m for n, (m, _) in loaded.items()}, cards
