"""Run trials on Ray Tune: an embedded Ray on this machine by default, any Ray cluster by address.

Each trial is a Tune trial running `gradviz.experiments.trials.execute_trial` (gradviz's one training loop) with one CPU
and one torch thread; it reports metrics and checkpoints through Tune, so a trial whose worker process or node
dies is restarted from its last checkpoint on any node (`max_failures` times). Trials that start from another
trial's weights (`depends_on`) run in a later wave, after their parents finished.

Security: Ray runs whatever job reaches its ports (the 2023 ShadowRay attacks used exactly that). The
embedded default binds every Ray process to 127.0.0.1 with no dashboard. On Linux, Ray 2.60 turns a loopback
node address into the machine's network address unless its single-machine mode is on, so `loopback_only`
turns that mode on; a cluster's head belongs on a private network, never on a public address.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from gradviz.experiments.trials import Trial, execute_trial

LOOPBACK = "127.0.0.1"
CHECKPOINT_NAME = "trial.checkpoint.safetensors"
_SINGLE_MACHINE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@dataclass(frozen=True)
class TrialOutcome:
    """How one trial ended: finished (with its final metrics), failed (with Ray's error) or skipped."""

    name: str
    state: str
    metrics: dict
    error: str | None = None


def loopback_only() -> None:
    """Make Ray (this process and the nodes it starts) use and bind only 127.0.0.1."""
    os.environ[_SINGLE_MACHINE_ENV] = "0"
    if "ray" in sys.modules:  # the constant is read when ray is imported
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False


def is_loopback(address: str) -> bool:
    host = address.split("://")[-1].rsplit(":", 1)[0].strip("[]")
    return host in (LOOPBACK, "localhost", "::1")


def connect(address: str | None = None, num_cpus: int | None = None) -> None:
    """Start the embedded local Ray (address None) or join a cluster ("auto", "HOST:PORT", "ray://HOST:PORT")."""
    import ray

    if address is not None and not is_loopback(address) and os.environ.get("RAY_AUTH_MODE") != "token":
        raise ValueError(f"{address}: a Ray cluster beyond this machine runs whatever job reaches it; start every "
                         "node and this driver with RAY_AUTH_MODE=token and the cluster's token (README: Experiments "
                         "on Ray)")
    if ray.is_initialized():
        return
    if address is None or is_loopback(address):
        loopback_only()
        # Ray's usage statistics probe the cloud metadata address (169.254.169.254) from the driver: a local run
        # talks to nothing beyond this machine.
        os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    # Trials report one line each (runner.progress_line); their own logs stay in Ray's session folder, errors come
    # back by name.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    quiet = {"logging_level": "WARNING", "log_to_driver": False}
    if address is None:
        ray.init(address="local", num_cpus=num_cpus or os.cpu_count(), include_dashboard=False,
                 _node_ip_address=LOOPBACK, **quiet)
    else:
        ray.init(address=address, **quiet, **({"_node_ip_address": LOOPBACK} if is_loopback(address) else {}))


class RayReporter:
    """Metrics and checkpoints through Ray Tune's API (used inside a Tune trial only)."""

    def restore(self, checkpoint: Path) -> bool:
        from ray import tune

        saved = tune.get_checkpoint()
        if saved is None:
            return False
        with saved.as_directory() as folder:
            checkpoint.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(folder) / CHECKPOINT_NAME, checkpoint)
        return True

    def report(self, metrics: dict, checkpoint: Path | None = None) -> None:
        from ray import tune

        if checkpoint is None:
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory() as folder:
            shutil.copyfile(checkpoint, Path(folder) / CHECKPOINT_NAME)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))


def _tune_trainable(params: dict, trials: dict[str, dict], threads: int, device: str) -> None:
    torch.set_num_threads(threads)
    execute_trial(Trial.from_dict(trials[params["trial"]]), RayReporter(), device=device)


def dependency_waves(trials: list[Trial]) -> list[list[Trial]]:
    """Trials in waves: each wave's parents (among these trials) all ran in earlier waves."""
    names = {t.name for t in trials}
    waves, placed, remaining = [], set(), list(trials)
    while remaining:
        ready = [t for t in remaining if all(d in placed or d not in names for d in t.depends_on)]
        if not ready:
            raise ValueError(f"trials depend on each other in a cycle: {', '.join(t.name for t in remaining)}")
        waves.append(ready)
        placed |= {t.name for t in ready}
        remaining = [t for t in remaining if t.name not in placed]
    return waves


def progress_line(name: str, metrics: dict) -> str:
    """One line of a trial's progress, as a CLI prints it: step, epoch, the latest monitor numbers."""
    steps, step = metrics.get("steps"), metrics.get("step", 0)
    parts = [f"{name}: step {step:,}" + (f"/{steps:,} ({step / steps:.0%})" if steps else "")]
    if "epoch" in metrics:
        parts.append(f"epoch {metrics['epoch']:.1f}")
    if "train_ce" in metrics:
        parts.append(f"ce {metrics['train_ce']:.3g}")
    if "accuracy" in metrics:
        parts.append(f"acc {metrics['accuracy']:.3f}")
    if "transfer@0.4" in metrics:
        parts.append(f"transfer@0.4 {metrics['transfer@0.4']:.3f}")
    return " · ".join(parts)


def _compact_reporter():
    """A Tune callback that prints one line per trial report instead of Tune's status tables."""
    from ray import tune

    class CompactProgress(tune.Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            print(progress_line(trial.config["trial"], result), flush=True)

        def on_trial_complete(self, iteration, trials, trial, **info):
            print(f"{trial.config['trial']}: done", flush=True)

        def on_trial_error(self, iteration, trials, trial, **info):
            print(f"{trial.config['trial']}: failed (Ray restarts it from its checkpoint while it may)", flush=True)

    return CompactProgress()


def _run_wave(wave: list[Trial], storage: Path, label: str, cpus_per_trial: int, gpus_per_trial: float,
              max_failures: int) -> list[TrialOutcome]:
    from ray import tune

    trainable = tune.with_parameters(_tune_trainable, trials={t.name: t.to_dict() for t in wave},
                                     threads=cpus_per_trial, device="cuda" if gpus_per_trial > 0 else "cpu")
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": cpus_per_trial, "gpu": gpus_per_trial}),
        param_space={"trial": tune.grid_search([t.name for t in wave])},  # Tune's table shows just the name
        tune_config=tune.TuneConfig(trial_dirname_creator=lambda t: t.config["trial"],
                                    trial_name_creator=lambda t: t.config["trial"], reuse_actors=True),
        run_config=tune.RunConfig(name=label, storage_path=str(storage.resolve()), verbose=0,
                                  callbacks=[_compact_reporter()],
                                  failure_config=tune.FailureConfig(max_failures=max_failures),
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=1)),
    )
    outcomes = []
    for result in tuner.fit():
        name = result.config["trial"]
        metrics = result.metrics or {}
        if result.error is not None:
            last_line = str(result.error).strip().splitlines()[-1]
            outcomes.append(TrialOutcome(name, "failed", metrics, last_line))
        elif metrics.get("final"):
            outcomes.append(TrialOutcome(name, "finished", metrics))
        else:  # stopped (Ctrl-C, the session's end) with its checkpoint kept
            outcomes.append(TrialOutcome(name, "interrupted", metrics, "run the same command again to resume it"))
    return outcomes


def run_trials(trials: list[Trial], storage: str | Path, label: str = "run", address: str | None = None,
               cpus_per_trial: int = 1, gpus_per_trial: float = 0, max_failures: int = 3,
               num_cpus: int | None = None) -> list[TrialOutcome]:
    """Run every trial, parents before children; a failed parent's children are skipped, not run."""
    if not trials:
        return []
    connect(address, num_cpus)
    storage = Path(storage)
    storage.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    outcomes: dict[str, TrialOutcome] = {}
    for index, wave in enumerate(dependency_waves(trials)):
        runnable = []
        for trial in wave:  # parents outside `trials` are built already; those inside ran in an earlier wave
            parents = [d for d in trial.depends_on if d in outcomes and outcomes[d].state != "finished"]
            if parents:
                outcomes[trial.name] = TrialOutcome(trial.name, "skipped", {},
                                                    f"its parent {', '.join(parents)} did not finish")
            else:
                runnable.append(trial)
        if runnable:
            for outcome in _run_wave(runnable, storage, f"{label}-{stamp}-wave{index}", cpus_per_trial,
                                     gpus_per_trial, max_failures):
                outcomes[outcome.name] = outcome
    return [outcomes[t.name] for t in trials]
