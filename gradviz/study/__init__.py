"""The human legitimacy study: stimuli, counterbalanced trial lists, storage and analysis (no UI here)."""
