"""The Ray runner for real: a two-node cluster on loopback survives a SIGKILLed trial; the local default binds
only 127.0.0.1; a trial cut off in one session resumes in the next."""
from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import torch

from gradviz.experiments.plan import sweep_trials
from gradviz.experiments.recipe import load_recipe
from gradviz.experiments.runner import LOOPBACK, dependency_waves, loopback_only, run_trials
from gradviz.experiments.trials import LocalReporter, execute_trial, read_json, read_metrics
from gradviz.nets.store import sha256_file
from gradviz.training.loop import TrainingCancelled, train_model, training_split

ROOT = Path(__file__).resolve().parents[2]
# 400 digits (100 held out), batch 30: 10 steps an epoch, 12 epochs = 120 steps, a checkpoint every epoch.
TINY = """
dataset = "mnist"
[defaults]
train_subset = 400
holdout = 100
batch_size = 30
epochs = 12
[sweeps.tiny]
defense = "gradreg"
lams = [0.3, 3]
seeds = [0, 1]
"""


def tiny_recipe(tmp_path: Path):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return load_recipe(path)


def kill_when_past(trial, step: int, killed: dict) -> threading.Thread:
    """SIGKILL the trial's worker process once it has reported `step`; records the step it had reached."""
    def watch():
        deadline = time.time() + 240
        while time.time() < deadline:
            rows = read_metrics(trial.folder)
            status = read_json(Path(trial.folder) / "status.json") or {}
            if rows and rows[-1]["step"] >= step and status.get("state") == "running":
                killed["step"] = rows[-1]["step"]
                os.kill(int(status["pid"]), signal.SIGKILL)
                return
            time.sleep(0.02)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def sequential_train(trial, out: Path) -> Path:
    """The same configuration trained by `gradviz train`, uninterrupted, one thread; returns its card path."""
    s = trial.settings
    args = ["--dataset", s["dataset"], "--defense", s["defense"], "--lam", str(s["lam"]), "--seed", str(s["seed"]),
            "--train-subset", str(s["train_subset"]), "--holdout", str(s["holdout"]), "--batch-size",
            str(s["batch_size"]), "--epochs", str(s["epochs"]), "--lam-warmup", str(s["lam_warmup"]),
            "--name", trial.name, "--out", str(out), "--checkpoint-dir", str(out / "checkpoints"), "--device", "cpu"]
    args += ["--fast-penalty"] if trial.config().fast_penalty else []  # as the trial computes (same weights bit for bit)
    subprocess.run([sys.executable, "-m", "gradviz", "train", *args], check=True, cwd=ROOT, capture_output=True,
                   env={**os.environ, "OMP_NUM_THREADS": "1"})
    return out / f"{trial.name}.json"


def test_dependency_waves_put_parents_first():
    trials = sweep_trials(load_recipe(ROOT / "recipes" / "mnist.toml"), ["gradreg-y"])
    waves = dependency_waves(trials)
    assert [len(w) for w in waves] == [1, 4] and waves[0][0].name.startswith("mnist-sweep-normal-")


@pytest.mark.cluster
@pytest.mark.slow
def test_a_two_node_loopback_cluster_finishes_a_sweep_whose_trial_was_sigkilled(tmp_path, monkeypatch):
    import ray
    from ray.cluster_utils import Cluster

    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    loopback_only()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "node_ip_address": LOOPBACK,
                                                            "include_dashboard": False})
    cluster.add_node(num_cpus=1, node_ip_address=LOOPBACK)
    try:
        trials = sweep_trials(tiny_recipe(tmp_path), None, tmp_path / "results")
        victim, killed = trials[1], {}
        watcher = kill_when_past(victim, 20, killed)
        outcomes = run_trials(trials, tmp_path / "results" / "ray", address=cluster.address, max_failures=2)
        watcher.join(timeout=1)
        nodes = [n for n in ray.nodes() if n["Alive"]]
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert len(nodes) == 2 and all(n["Resources"]["CPU"] == 1 for n in nodes)
    assert [o.state for o in outcomes] == ["finished"] * 5, outcomes
    assert killed, "the victim finished before it could be killed"
    final = read_json(Path(victim.folder) / "final.json")["metrics"]
    # It resumed from the last checkpoint Ray had (a row is logged just before its checkpoint reaches Ray, so
    # that is the row the kill saw or the one before): it redid at most one interval of the steps it had done.
    assert 10 <= final["resumed_from_step"] <= killed["step"] <= final["resumed_from_step"] + 10
    assert final["step"] == 120
    assert len({r["step"] for r in read_metrics(victim.folder)}) == 12  # one row per checkpoint, none lost
    ray_card = Path(victim.out_dir) / f"{victim.name}.json"
    sequential = sequential_train(victim, tmp_path / "sequential")
    assert read_json(ray_card)["sha256"] == read_json(sequential)["sha256"]
    assert sha256_file(ray_card.with_suffix(".safetensors")) == sha256_file(sequential.with_suffix(".safetensors"))


def _non_loopback(process: psutil.Process) -> set[tuple]:
    found = set()
    for conn in process.net_connections(kind="inet"):
        for address in [conn.laddr, conn.raddr]:
            if address and not ipaddress.ip_address(address.ip.removeprefix("::ffff:")).is_loopback:
                if conn.status == psutil.CONN_LISTEN or conn.raddr:
                    found.add((process.name(), conn.status, address.ip, address.port))
    return found


@pytest.mark.cluster
@pytest.mark.slow
def test_the_local_default_binds_every_ray_port_to_loopback_only(tmp_path):
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(TINY.replace("seeds = [0, 1]", "seeds = [0]").replace("epochs = 12", "epochs = 4"))
    run = subprocess.Popen([sys.executable, "-m", "gradviz", "zoo", "sweep", str(recipe), "--results",
                            str(tmp_path / "results"), "--num-cpus", "2"], cwd=ROOT, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, env={k: v for k, v in os.environ.items()
                                                          if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"})
    driver, listening, outside = psutil.Process(run.pid), set(), set()
    while run.poll() is None:
        for process in [driver, *driver.children(recursive=True)]:
            try:
                outside |= _non_loopback(process)
                listening |= {(c.laddr.ip, c.laddr.port) for c in process.net_connections(kind="inet")
                              if c.status == psutil.CONN_LISTEN}
            except psutil.Error:
                continue  # a worker that just ended
        time.sleep(0.2)
    output = run.stdout.read().decode()
    assert run.returncode == 0, output[-3000:]
    assert len(listening) >= 3  # GCS, raylet, workers: the check saw Ray's ports
    assert outside == set()


@pytest.mark.slow
def test_a_distillation_trial_counts_teacher_and_student_as_one_run(tmp_path):
    from gradviz.experiments.trials import Trial
    from gradviz.training.config import TrainConfig

    config = TrainConfig(defense="distilled", train_subset=300, holdout=60, batch_size=30, epochs=3, width=8)
    trial = Trial(name="distilled", settings=config.settings(), folder=str(tmp_path / "trial"),
                  checkpoint=str(tmp_path / "run.ckpt"), out_dir=str(tmp_path / "out"), eval_split="holdout",
                  eval_n=60)
    final = execute_trial(trial, LocalReporter())
    steps = [r["step"] for r in read_metrics(trial.folder)]
    assert final["steps"] == 48 and steps == [8, 16, 32, 40, 48]  # 24 a phase; no checkpoint at a phase's end


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as a trial runs, so its weights can be compared with a one-thread `gradviz train`
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_a_trial_cut_off_in_one_session_resumes_from_its_own_checkpoint_in_the_next(tmp_path, one_thread):
    trial = sweep_trials(tiny_recipe(tmp_path), None, tmp_path / "results")[0]
    config = trial.config()
    calls = iter(range(10_000))
    with pytest.raises(TrainingCancelled):  # the session ends at step 37; the checkpoint holds step 37
        train_model(config, training_split(config)[0], progress=False, checkpoint=trial.checkpoint,
                    checkpoint_every=10, resume=True, should_stop=lambda: next(calls) >= 37)
    final = execute_trial(trial, LocalReporter())
    assert final["resumed_from_step"] == 37 and final["step"] == 120
    assert not Path(trial.checkpoint).exists()
    sequential = sequential_train(trial, tmp_path / "sequential")
    assert read_json(Path(trial.out_dir) / f"{trial.name}.json")["sha256"] == read_json(sequential)["sha256"]
    assert execute_trial(trial, LocalReporter()) == final  # finished: not trained again


SOURCED = """
dataset = "mnist"
transfer_source = "zoo-source"
eval_n = 50
[defaults]
train_subset = 200
batch_size = 50
epochs = 1
width = 8
[models.zoo-source]
defense = "normal"
[models.same-arch-source]
defense = "normal"
seed = 1
[models.student]
defense = "gradreg"
lam = 1
transfer_source = "same-arch-source"
"""


@pytest.mark.slow
def test_an_entry_is_monitored_against_its_own_source_its_checkpoint_until_it_finishes(tmp_path, one_thread):
    from gradviz.experiments.plan import build_trials
    from gradviz.experiments.trials import Monitor
    from gradviz.nets.checkpoints import model_from_checkpoint

    path = tmp_path / "sourced.toml"
    path.write_text(SOURCED)
    trials = {t.name: t for t in build_trials(load_recipe(path), tmp_path / "zoo", tmp_path / "results")}
    student, source = trials["student"], trials["same-arch-source"]
    assert student.transfer_source.endswith("same-arch-source.json")
    assert student.transfer_checkpoint == source.checkpoint and trials["zoo-source"].transfer_source is None
    monitor = Monitor(student, student.config(), training_split(student.config())[1])
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    assert "transfer@0.4" not in monitor(model)  # nothing of the source yet: accuracy only
    config = source.config()
    with pytest.raises(TrainingCancelled):  # the source is cut off at step 2 of 4: its checkpoint stands in
        calls = iter(range(100))
        train_model(config, training_split(config)[0], progress=False, checkpoint=source.checkpoint,
                    checkpoint_every=1, resume=True, should_stop=lambda: next(calls) >= 2)
    metrics = monitor(model)
    assert metrics["transfer_source_step"] == 2 and "transfer@0.4" in metrics
    made_from_checkpoint = monitor.adversarial[0.4].clone()
    assert model_from_checkpoint(source.checkpoint).training is False
    execute_trial(source, LocalReporter())  # the source finishes: its saved model replaces the checkpoint
    assert monitor(model)["transfer_source_step"] == "final"
    assert not torch.equal(made_from_checkpoint, monitor.adversarial[0.4])


def test_a_trial_reports_one_compact_line_not_a_status_table():
    from gradviz.experiments.runner import progress_line

    line = progress_line("mnist-gradreg-paper", {"step": 468, "steps": 16380, "epoch": 2.0, "train_ce": 0.1234,
                                                 "accuracy": 0.981, "transfer@0.4": 0.7215})
    assert line == ("mnist-gradreg-paper: step 468/16,380 (3%) · epoch 2.0 · ce 0.123 · acc 0.981 · "
                    "transfer@0.4 0.722")
    assert progress_line("x", {"step": 5}) == "x: step 5"
