"""What a person sees when a page fails unexpectedly: one line with an id that matches the server log's entry.

Expected conditions (missing data, a missing extra, a run still going) are messages on each page; this is for the
rest. Kept free of heavy imports: the participant's study page is routed through it too.
"""
import logging
import os
import sys
import uuid

import streamlit as st

log = logging.getLogger("gradviz.app")


def run_page(page) -> str | None:
    """Run the routed page; an unexpected error is logged with a fresh id and shown as one line naming that id (the
    details stay in the server log: showErrorDetails is "none"); a missing dataset is a warning saying how to get
    it. Returns the id, or None when the page ran (or only lacked a dataset).
    GRADVIZ_DEBUG=1 re-raises the error after logging it, as the tests do."""
    try:
        page.run()
    except Exception as exc:
        if _missing_dataset(exc):  # expected on a machine without the full datasets: say how to get them
            st.warning(f"This page needs the full dataset: {exc}", icon=":material/dataset:")
            return None
        error_id = uuid.uuid4().hex[:8]
        log.exception("gradviz error %s on page %r", error_id, getattr(page, "title", page))
        st.error(f"Something went wrong on this page (error {error_id}). The server log has the details under "
                 "that id; please report it with what you did.", icon=":material/error:")
        if os.environ.get("GRADVIZ_DEBUG"):
            raise
        return error_id
    return None


def _missing_dataset(exc: Exception) -> bool:
    """Whether `exc` is gradviz's DatasetNotFound (only possible once a page has imported the datasets module, so
    the check imports nothing heavy)."""
    datasets = sys.modules.get("gradviz.data.datasets")
    return datasets is not None and isinstance(exc, datasets.DatasetNotFound)
