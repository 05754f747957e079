"""Counterbalanced, reproducible trial lists.

Latin square: with K conditions, list j shows item i in condition (i + j) mod K, so across any K
consecutive participants every item appears in every condition exactly once. A participant's list index
is their allocation slot mod K (slots are claimed atomically in the database). Trial order and the
positions of attention checks come from an RNG seeded by sha256(salt, participant id): the same person
gets the same order after a refresh or on another device.
"""
from __future__ import annotations

import hashlib
import random


def participant_rng(salt: str, participant_id: str) -> random.Random:
    digest = hashlib.sha256(f"{salt}:{participant_id}".encode()).hexdigest()
    return random.Random(int(digest[:16], 16))


def index_set(stimuli: list[dict]) -> tuple[list[str], list[str], dict[tuple[str, str], str], list[dict]]:
    """Items, conditions, (item, condition) -> stimulus id, and the attention-check stimuli of a set."""
    adversarial = [s for s in stimuli if s["kind"] != "attention"]
    attention = [s for s in stimuli if s["kind"] == "attention"]
    grid = {(s["item_id"], s["condition"]): s["stimulus_id"] for s in adversarial}
    items = sorted({s["item_id"] for s in adversarial})
    conditions = sorted({s["condition"] for s in adversarial})
    return items, conditions, grid, attention


def latin_assignment(items: list[str], conditions: list[str], list_index: int) -> list[tuple[str, str]]:
    k = len(conditions)
    return [(item, conditions[(i + list_index) % k]) for i, item in enumerate(items)]


def make_trials(stimuli: list[dict], list_index: int, participant_id: str, salt: str = "gradviz",
                n_pairs: int = 6) -> list[dict]:
    """The materialised trial list of one participant: rating trials, pairwise trials, attention checks."""
    items, conditions, grid, attention = index_set(stimuli)
    if not items or not conditions:
        raise ValueError("the stimulus set has no adversarial stimuli")
    rng = participant_rng(salt, participant_id)
    by_target = {s["stimulus_id"]: s for s in stimuli}
    trials = [{"kind": "rating", "stimulus_id": grid[(item, cond)],
               "target_class": by_target[grid[(item, cond)]]["target_class"]}
              for item, cond in latin_assignment(items, conditions, list_index)]
    trials += _pairs(items, conditions, grid, by_target, list_index, n_pairs, rng)
    rng.shuffle(trials)
    for check in attention:  # random positions, never first
        trials.insert(rng.randint(1, len(trials)), {"kind": "attention", "stimulus_id": check["stimulus_id"],
                                                    "target_class": None})
    return [{**t, "trial_index": i} for i, t in enumerate(trials)]


def _pairs(items, conditions, grid, by_id, list_index, n_pairs, rng) -> list[dict]:
    """Two stimuli of the same item (same target, attack and ε) from two source models, sides randomised."""
    models = sorted({c.split("|", 1)[0] for c in conditions})
    settings = sorted({c.split("|", 1)[1] for c in conditions})
    if len(models) < 2:
        return []
    pairs = [(a, b) for i, a in enumerate(models) for b in models[i + 1:]]
    out = []
    for k in range(min(n_pairs, len(items))):
        a, b = pairs[(k + list_index) % len(pairs)]
        item = items[(k * 7 + list_index) % len(items)]
        setting = rng.choice(settings)
        left, right = grid[(item, f"{a}|{setting}")], grid[(item, f"{b}|{setting}")]
        if rng.random() < 0.5:
            left, right = right, left
        out.append({"kind": "pair", "stimulus_id": left, "other_stimulus_id": right,
                    "target_class": by_id[left]["target_class"]})
    return out
