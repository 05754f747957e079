"""scripts/build_zoo.sh, run against a stand-in Python that records the commands it is given."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "build_zoo.sh"
CHOSEN_LAM = "7"  # what the stand-in answers when the script asks a sweep for its chosen λ


def build(tmp_path: Path, **env: str) -> list[str]:
    """Run the script with PYTHON replaced; the commands it ran, one string each."""
    log = tmp_path / "commands.log"
    log.unlink(missing_ok=True)
    fake = tmp_path / "python"
    fake.write_text(f'#!/usr/bin/env bash\necho "$*" >> "{log}"\n[ "$1" != -c ] || echo {CHOSEN_LAM}\n')
    fake.chmod(0o755)
    subprocess.run(["bash", str(SCRIPT), str(tmp_path / "out"), str(tmp_path / "runs")], check=True,
                   env={**os.environ, "PYTHON": str(fake), "DATASETS": "mnist", **env}, capture_output=True)
    return log.read_text().splitlines() if log.exists() else []


def trained(commands: list[str]) -> dict[str, str]:
    """{model name: its train command}."""
    return {c.split("--name ")[1].split()[0]: c for c in commands if c.startswith("-m gradviz train")}


def test_the_committed_mnist_zoo_is_six_resumable_runs_with_its_recipe(tmp_path):
    runs = trained(build(tmp_path, LAM_Y="10", LAM_K="1"))
    assert sorted(runs) == sorted(f"mnist-{d}" for d in ("normal", "advtrain", "distilled", "gradreg",
                                                          "gradreg-advtrain", "gradreg-uniform"))
    assert all(f"--resume --checkpoint-dir {tmp_path}/runs/checkpoints" in c for c in runs.values())
    normal = runs["mnist-normal"]
    assert "--epochs 70 --batch-size 256 --lr 2e-4 --lr-schedule constant" in normal and "--augment" not in normal
    assert runs["mnist-gradreg"].endswith("--lam 10 --lam-warmup 0.2")
    assert runs["mnist-gradreg-uniform"].endswith("--lam 1 --lam-warmup 0.2 --epochs 16")
    both = runs["mnist-gradreg-advtrain"]
    assert "--lam 3 --eps 0.3" in both and both.endswith(f"--init-from {tmp_path}/out/mnist-advtrain.json")


def test_without_a_lam_each_defense_is_swept_at_its_own_length_and_trained_at_the_chosen_lam(tmp_path):
    commands = build(tmp_path, ONLY="mnist-gradreg mnist-gradreg-uniform")
    sweeps = [c for c in commands if c.startswith("-m gradviz sweep")]
    assert len(sweeps) == 2
    assert "--defenses gradreg " in sweeps[0] and "--epochs 8" in sweeps[0] and "--epochs 16" not in sweeps[0]
    assert "--defenses gradreg-uniform " in sweeps[1] and sweeps[1].endswith("--epochs 16")  # the last --epochs wins
    assert all(f"--lam {CHOSEN_LAM} " in c for c in trained(commands).values())


def test_finished_models_are_skipped_and_only_limits_the_work(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mnist-normal.json").write_text("{}")
    assert "mnist-normal" not in trained(build(tmp_path, LAM_Y="10", LAM_K="1"))
    commands = build(tmp_path, ONLY="mnist-gradreg-advtrain")
    assert not [c for c in commands if "sweep" in c]  # its λ does not come from the Grad Reg (y) sweep on MNIST
