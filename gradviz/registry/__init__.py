"""Bringing your own: registering a model from outside for a dataset (datasets register in gradviz.data.adding)."""
