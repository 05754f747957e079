"""`gradviz models`: the zoo and the user's models."""
from __future__ import annotations

import json

from gradviz.nets.cards import list_models


def add_parser(sub) -> None:
    m = sub.add_parser("models", help="list the zoo and user models")
    m.add_argument("--json", action="store_true")


def run(args) -> int:
    cards = list_models()
    if args.json:
        print(json.dumps(cards, indent=2))
        return 0
    for c in cards:
        print(f"{c['origin']:5} {c['name']:36} {c['dataset']:14} {c['defense']:17} "
              f"acc {c['clean_test_accuracy']:.4f}")
    if not cards:
        print("no models found")
    return 0
