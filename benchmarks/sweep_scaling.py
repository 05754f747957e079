"""The same 4-trial sweep (2 λ × 2 seeds, sharing one finished reference model) run sequentially in this process
and on the embedded local Ray with 2 CPUs, in one run: the wall-clock ratio (goal ≤ 0.6) and Ray's overhead per
trial (goal ≤ 2 s): 2 CPUs × Ray's wall time, less the time the trials themselves ran (Tune's time_total_s), over
4 trials — Ray's start-up, worker processes and scheduling. The rest of the gap to 0.5 is the trials running
slower two at a time than alone (two cores sharing caches and memory), printed as the parallel slowdown.

Both sides run gradviz.experiments.trials.execute_trial with one torch thread per trial. Needs 2 idle cores to mean anything.

Usage: python -m benchmarks.sweep_scaling [--epochs 6] [--train-subset 2000]
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from gradviz.experiments.plan import sweep_trials
from gradviz.experiments.recipe import load_recipe
from gradviz.experiments.runner import run_trials
from gradviz.experiments.trials import LocalReporter, execute_trial

RECIPE = """
dataset = "mnist"
[defaults]
train_subset = {subset}
holdout = 500
batch_size = 64
epochs = {epochs}
[sweeps.bench]
defense = "gradreg"
lams = [1, 10]
seeds = [0, 1]
"""


def _fresh(trials, root: Path, name: str):
    """The candidates with their folders and outputs moved under `root/name` (the reference stays shared)."""
    return [replace(t, folder=str(root / name / t.name), checkpoint=str(root / name / f"{t.name}.ckpt"),
                    out_dir=str(root / name / "models")) for t in trials]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--train-subset", type=int, default=2000)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="gradviz-sweep-bench-"))
    try:
        (root / "bench.toml").write_text(RECIPE.format(subset=args.train_subset, epochs=args.epochs))
        reference, *candidates = sweep_trials(load_recipe(root / "bench.toml"), None, root / "results")
        torch.set_num_threads(1)
        execute_trial(reference, LocalReporter())  # made once; both sides score against it
        start = time.perf_counter()
        for trial in _fresh(candidates, root, "sequential"):
            execute_trial(trial, LocalReporter())
        sequential = time.perf_counter() - start
        start = time.perf_counter()
        outcomes = run_trials(_fresh(candidates, root, "ray"), root / "ray-storage", label="bench", num_cpus=2)
        on_ray = time.perf_counter() - start
        assert all(o.state == "finished" for o in outcomes), outcomes
        in_trials = sum(o.metrics["time_total_s"] for o in outcomes)
        print(f"4 trials of {args.epochs} epochs on {args.train_subset - 500} digits, one torch thread each")
        print(f"  sequential, this process      {sequential:7.1f} s   1.00x")
        print(f"  local Ray, 2 CPUs             {on_ray:7.1f} s   {on_ray / sequential:.2f}x sequential (goal ≤ 0.6)")
        print(f"  Ray overhead per trial        {(2 * on_ray - in_trials) / 4:7.1f} s   (goal ≤ 2 s)")
        print(f"  parallel slowdown             {in_trials / sequential:7.2f}x   (a trial two at a time vs alone)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
