"""How the dashboard is deployed: the whole lab on a researcher's machine, or only the study on the internet.

GRADVIZ_MODE=study (what deploy/ sets) routes nothing but the participant flow and the password-protected
researcher page: the Explore pages are not registered at all, so no URL reaches them, and background jobs are
accepted only from a logged-in researcher. The default, "lab", is everything, meant for 127.0.0.1.
"""
from __future__ import annotations

import os

MODES = ("lab", "study")


def deployment_mode() -> str:
    """GRADVIZ_MODE, checked: an unknown mode is an error rather than a silent fallback to the whole lab."""
    mode = os.environ.get("GRADVIZ_MODE", "lab").strip().lower() or "lab"
    if mode not in MODES:
        raise ValueError(f"GRADVIZ_MODE={mode!r} is not a mode; use {' or '.join(MODES)}")
    return mode


def study_only() -> bool:
    return deployment_mode() == "study"
