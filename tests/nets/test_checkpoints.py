"""Resumable training: checkpoints round-trip without pickle, and a run killed mid-way resumes to the same weights."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from gradviz.nets.checkpoints import (
    Checkpoint,
    CheckpointError,
    checkpoint_path,
    list_checkpoints,
    load_checkpoint,
    read_metadata,
    save_checkpoint,
)
from gradviz.training.config import TrainConfig
from gradviz.training.loop import TrainingCancelled, learning_rate, penalty_weight, train_model

ROOT = Path(__file__).resolve().parents[2]


def _weights_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoint_round_trip_keeps_optimizer_and_rng_state(tmp_path):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-4)
    model(torch.ones(4, 3)).sum().backward()
    optimizer.step()
    ckpt = Checkpoint(config={"lam": 1.0}, phase="gradreg", step=7, total_steps=10, elapsed_seconds=1.5,
                      model=model.state_dict(), optimizer=optimizer.state_dict(),
                      rng={"torch": torch.get_rng_state()}, running={"loss": 0.25})
    path = save_checkpoint(checkpoint_path(tmp_path, "run"), ckpt)
    back = load_checkpoint(path)
    assert (back.step, back.phase, back.config, back.running) == (7, "gradreg", {"lam": 1.0}, {"loss": 0.25})
    assert _weights_equal(back.model, model.state_dict())
    assert torch.equal(back.rng["torch"], torch.get_rng_state())
    fresh = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-4)
    fresh.load_state_dict(back.optimizer)
    assert fresh.state_dict()["param_groups"] == optimizer.state_dict()["param_groups"]
    assert torch.equal(fresh.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])
    assert [c["step"] for c in list_checkpoints(tmp_path)] == [7]


def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path):
    bad = tmp_path / "x.checkpoint.safetensors"
    bad.write_bytes(b"\x80\x04 pickled")
    with pytest.raises(CheckpointError, match="not a readable gradviz checkpoint"):
        read_metadata(bad)
    assert list_checkpoints(tmp_path) == []


@pytest.mark.slow
def test_cancelled_distillation_resumes_in_the_student_phase_to_identical_weights(tiny_train, tmp_path):
    config = TrainConfig(defense="distilled", steps=8, batch_size=64, width=8, augment=True, lr_schedule="cosine",
                         device="cpu")
    reference, _ = train_model(config, tiny_train, progress=False)
    path = checkpoint_path(tmp_path, "distilled")
    calls = []
    with pytest.raises(TrainingCancelled):  # 8 teacher steps, then cancelled after 3 student steps
        train_model(config, tiny_train, progress=False, checkpoint=path, checkpoint_every=2,
                    should_stop=lambda: calls.append(1) or len(calls) > 11)
    assert (read_metadata(path)["phase"], read_metadata(path)["step"]) == ("student", 3)
    resumed, card = train_model(config, tiny_train, progress=False, checkpoint=path, resume=True)
    assert card["resumed_at_step"] == 3
    assert _weights_equal(resumed.state_dict(), reference.state_dict())


def test_resume_refuses_a_checkpoint_of_other_settings_and_never_overwrites_one(tiny_train, tmp_path):
    config = TrainConfig(defense="gradreg", lam=1.0, steps=4, batch_size=64, width=8, device="cpu")
    path = checkpoint_path(tmp_path, "run")
    with pytest.raises(TrainingCancelled):
        train_model(config, tiny_train, progress=False, checkpoint=path, should_stop=lambda: True)
    with pytest.raises(CheckpointError, match="interrupted run"):
        train_model(config, tiny_train, progress=False, checkpoint=path)
    other = TrainConfig(defense="gradreg", lam=3.0, steps=4, batch_size=64, width=8, device="cpu")
    with pytest.raises(CheckpointError, match="differs in lam"):
        train_model(other, tiny_train, progress=False, checkpoint=path, resume=True)


def test_schedules():
    config = TrainConfig(lr=1e-3, lr_schedule="cosine", lam=10.0, lam_warmup=0.5)
    assert learning_rate(config, 1, 100) == pytest.approx(1e-3)
    assert learning_rate(config, 51, 100) == pytest.approx(5e-4)
    assert learning_rate(config, 100, 100) < 1e-6
    assert [penalty_weight(config, s, 100) for s in (10, 50, 90)] == pytest.approx([2.0, 10.0, 10.0])
    assert penalty_weight(TrainConfig(lam=10.0), 1, 100) == 10.0
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(lr_schedule="step").validate()


def _train_cli(name: str, out: Path, checkpoints: Path, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "gradviz", "train", "--defense", "gradreg", "--lam", "1", "--steps", "40",
               "--batch-size", "32", "--width", "8", "--augment", "--lr-schedule", "cosine", "--lam-warmup", "0.25",
               "--name", name, "--out", str(out), "--checkpoint-dir", str(checkpoints), "--checkpoint-every", "4",
               "--device", "cpu", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_a_run_killed_with_sigkill_resumes_to_the_weights_of_an_uninterrupted_run(tmp_path):
    out, checkpoints = tmp_path / "models", tmp_path / "checkpoints"
    reference = _train_cli("run", tmp_path / "reference", tmp_path / "unused")
    victim = _train_cli("run", out, checkpoints)
    path = checkpoint_path(checkpoints, "run")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and victim.poll() is None:
        if path.is_file() and read_metadata(path)["step"] >= 12:
            break
        time.sleep(0.05)
    assert victim.poll() is None, f"the run ended before it could be killed: {victim.communicate()}"
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    killed_at = read_metadata(path)["step"]
    assert 12 <= killed_at < 40 and not (out / "run.json").exists()
    resumed = _train_cli("run", out, checkpoints, "--resume")
    assert resumed.wait(timeout=180) == 0, resumed.communicate()
    assert reference.wait(timeout=180) == 0, reference.communicate()
    assert "resuming from" in resumed.stderr.read()
    assert _weights_equal(load_file(out / "run.safetensors"), load_file(tmp_path / "reference" / "run.safetensors"))
    assert not path.exists()  # the finished model is saved, so the checkpoint is gone
