"""scripts/gpu_check.sh's dry run on the CPU: the same device tests and timing table a GPU machine would run."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def test_the_gpu_check_dry_run_passes_on_the_cpu_and_writes_its_table(tmp_path):
    out = tmp_path / "check.md"
    done = subprocess.run(["bash", "scripts/gpu_check.sh", "--device", "cpu", "--n", "100", "--attack-n", "40",
                           "--repeats", "2", "--out", str(out)], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHON": sys.executable}, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "passed" in done.stdout and "== timings on cpu" in done.stdout
    table = out.read_text()
    assert table.startswith("Device check on **cpu")
    for part in ("| dashboard | FGSM + saliency + predictions, 4 models |", "| training step (batch 128) | gradreg |",
                 "| attack on 40 digits | MI-FGSM", "| evaluation matrix | 6 models × FGSM, TGSM × 8 ε × 100 digits |"):
        assert part in table, table


def test_the_gpu_check_refuses_cuda_where_there_is_none(tmp_path, monkeypatch, capsys):
    import pytest
    import torch

    from benchmarks.gpu_check import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as stop:
        main(["--device", "cuda", "--out", str(tmp_path / "x.md")])
    assert stop.value.code == 2 and "--device cpu runs the same check" in capsys.readouterr().err
