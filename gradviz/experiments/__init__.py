"""Experiments: recipes, trials run on Ray Tune, the zoo's build plan and λ sweeps."""
