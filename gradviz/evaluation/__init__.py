"""Evaluation: the source × target matrix, masking checks, intervals, grids, figures and reports."""
