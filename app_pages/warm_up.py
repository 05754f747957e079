"""Start-up warm-up: once the first page of a fresh server has been drawn, one background thread imports what the
other pages need (torch, captum, the attacks, the figures: about 3 s on 2 CPU cores) and reads the default
dataset's files (their sha256 checked: 0.5 s), so the page a person opens next does not pay for them.

It waits until the first page has been drawn: the browser draws a page after the server has finished it, and on
2 cores an import running meanwhile slows that drawing down (the Train page's first visit measured 3.9 s with the
wait, 6.4 s with a warm-up started at once)."""
from __future__ import annotations

import importlib
import logging
import threading
import time

import streamlit as st

DELAY_S = 1.5  # the browser draws most pages within this after the server has finished them
HEAVY = ("torch", "captum.attr", "pandas", "plotly.graph_objects", "gradviz.attacks.registry",
         "gradviz.attribution.methods", "gradviz.attribution.sanity", "gradviz.evaluation.figures",
         "gradviz.evaluation.runs.matrix", "gradviz.evaluation.runs.interpretation")
DATASETS = ("mnist",)  # the pages' default; its arrays are cached per process (gradviz.data.datasets.load_arrays)

log = logging.getLogger("gradviz.app")


@st.cache_resource(show_spinner=False)
def warm_up() -> threading.Thread:
    """The process's one warm-up thread (started by the first call)."""
    thread = threading.Thread(target=_warm, args=(DELAY_S,), name="gradviz-warm-up", daemon=True)
    thread.start()
    return thread


def _warm(delay: float) -> None:
    time.sleep(delay)
    for name in HEAVY:
        try:
            importlib.import_module(name)
        except Exception:  # a missing extra is the page's to report, not the warm-up's
            log.warning("warm-up could not import %s", name, exc_info=True)
    from gradviz.data.datasets import DatasetNotFound, load_arrays

    for name in DATASETS:
        try:
            load_arrays(name)
        except DatasetNotFound:  # the pages say how to get it
            pass
        except Exception:
            log.warning("warm-up could not read %s", name, exc_info=True)
