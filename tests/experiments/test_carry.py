"""Carrying long runs in the checkout: a finished model and a cut-off checkpoint packed on one machine are
unpacked on a "new" one (an empty results folder) and the cut-off run resumes where it stopped."""
from __future__ import annotations

import gzip
import json
import subprocess
from pathlib import Path

import pytest
import torch

from gradviz.cli.main import main
from gradviz.experiments.carry import CHECKPOINT, MANIFEST, CarryError, manifest, pack, unpack
from gradviz.experiments.plan import carry_root, entry_trials, trial_state
from gradviz.experiments.recipe import load_recipe
from gradviz.experiments.trials import LocalReporter, execute_trial, read_metrics
from gradviz.nets.checkpoints import load_checkpoint, save_checkpoint
from gradviz.nets.store import load_model
from gradviz.training.loop import TrainingCancelled, train_model, training_split

pytestmark = [pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
RECIPE = """
dataset = "mnist"
eval_n = 50
[defaults]
train_subset = 200
batch_size = 50
epochs = 3
width = 8
[models.long-normal]
in_zoo = false
defense = "normal"
[models.long-gradreg]
in_zoo = false
defense = "gradreg"
lam = 1
"""


@pytest.fixture
def machine_one(tmp_path):
    """A recipe whose normal entry finished and whose gradreg entry was cut off at step 5 of 12."""
    path = tmp_path / "long.toml"
    path.write_text(RECIPE)
    recipe = load_recipe(path)
    trials = {t.name: t for t in entry_trials(recipe, tmp_path / "zoo", tmp_path / "one")}
    execute_trial(trials["long-normal"], LocalReporter())
    gradreg = trials["long-gradreg"]
    config = gradreg.config()
    calls = iter(range(100))
    with pytest.raises(TrainingCancelled):
        train_model(config, training_split(config)[0], progress=False, checkpoint=gradreg.checkpoint,
                    checkpoint_every=1, resume=True, should_stop=lambda: next(calls) >= 5)
    return recipe, path, trials


def test_a_run_cut_off_on_one_machine_resumes_on_a_new_one_from_what_the_checkout_carries(machine_one, tmp_path,
                                                                                          capsys):
    recipe, path, one = machine_one
    assert main(["zoo", "carry", str(path), "--results", str(tmp_path / "one"), "--out", str(tmp_path / "zoo")]) == 0
    said = capsys.readouterr().out
    assert "long-normal: finished model at float16" in said and "long-gradreg: checkpoint at step 5/12" in said
    root = carry_root(recipe)
    normal, gradreg = manifest(root, "long-normal"), manifest(root, "long-gradreg")
    assert normal["state"] == "finished" and normal["stored_dtype"] == "float16"
    assert gradreg["state"] == "checkpoint" and gradreg["step"] == 5 and gradreg["moments_dtype"] == "bfloat16"
    carried_model, card = load_model(root / "long-normal" / "long-normal.json")
    assert card["stored_dtype"] == "float16" and abs(card["clean_test_accuracy"] - normal["clean_test_accuracy"]) < 1e-9

    two = {t.name: t for t in entry_trials(recipe, tmp_path / "zoo", tmp_path / "two")}  # a new machine
    lines = [unpack(t, root) for t in two.values()]
    assert "finished on another machine" in lines[0] and "resumes from its carried checkpoint, step 5/12" in lines[1]
    assert trial_state(two["long-normal"])["state"] == "finished"
    assert trial_state(two["long-gradreg"])["state"] == "resumable"
    restored, original = load_checkpoint(two["long-gradreg"].checkpoint), load_checkpoint(one["long-gradreg"].checkpoint)
    assert all(torch.equal(restored.model[k], v) for k, v in original.model.items())  # weights exact
    assert all(torch.equal(restored.rng[k], v) for k, v in original.rng.items())
    for pid, slots in original.optimizer["state"].items():
        for slot in ("exp_avg", "exp_avg_sq"):
            back = restored.optimizer["state"][pid][slot]
            assert back.dtype == torch.float32
            assert torch.equal(back, slots[slot].to(torch.bfloat16).float())  # moments: bfloat16, nothing else
            assert torch.allclose(back, slots[slot], rtol=2 ** -8, atol=0)
    assert unpack(two["long-gradreg"], root) is None  # this machine now has the carried step: nothing to do
    final = execute_trial(two["long-gradreg"], LocalReporter())
    assert final["resumed_from_step"] == 5 and final["step"] == 12
    assert [r["step"] for r in read_metrics(two["long-gradreg"].folder)] == [8, 12]
    assert read_metrics(two["long-normal"].folder) == read_metrics(one["long-normal"].folder)  # its curve came too
    assert unpack(two["long-gradreg"], root) is None  # finished here: the carried checkpoint is ignored
    model, _ = load_model(Path(two["long-normal"].out_dir) / "long-normal.json")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), carried_model.state_dict().values()))

    assert main(["zoo", "carry", str(path), "--results", str(tmp_path / "two")]) == 0  # both finished now
    capsys.readouterr()
    three = ["--results", str(tmp_path / "three"), "--out", str(tmp_path / "zoo")]  # a third machine
    assert main(["zoo", "status", str(path), *three]) == 0
    assert capsys.readouterr().out.count("carried (finished)") == 2
    assert main(["zoo", "build", str(path), *three]) == 0  # unpacks both, so nothing is left to train
    assert "0 trial(s): nothing to do" in capsys.readouterr().err


def test_a_carried_checkpoint_is_gzip_of_a_plain_checkpoint_and_smaller_than_the_original(machine_one):
    recipe, _, one = machine_one
    root = carry_root(recipe)
    pack(one["long-gradreg"], root)
    carried = root / "long-gradreg" / CHECKPOINT
    with gzip.open(carried) as fh:
        assert fh.read(8)  # a readable gzip stream
    assert carried.stat().st_size < 0.8 * Path(one["long-gradreg"].checkpoint).stat().st_size


def test_a_changed_carried_file_or_other_settings_are_refused_and_a_newer_local_checkpoint_wins(machine_one, tmp_path):
    recipe, path, one = machine_one
    root = carry_root(recipe)
    pack(one["long-gradreg"], root)
    assert unpack(one["long-gradreg"], root) is None  # the packing machine has the same step already
    two = {t.name: t for t in entry_trials(recipe, tmp_path / "zoo", tmp_path / "two")}
    ahead = load_checkpoint(one["long-gradreg"].checkpoint)
    ahead.step = 9
    save_checkpoint(two["long-gradreg"].checkpoint, ahead)
    assert unpack(two["long-gradreg"], root) is None  # a newer checkpoint on this machine is kept
    Path(two["long-gradreg"].checkpoint).unlink()

    entry_path = root / "long-gradreg" / MANIFEST
    entry = json.loads(entry_path.read_text())
    entry_path.write_text(json.dumps({**entry, "settings": {**entry["settings"], "lam": 2}}))
    with pytest.raises(CarryError, match="other settings"):
        unpack(two["long-gradreg"], root)
    entry_path.write_text(json.dumps(entry))
    with open(root / "long-gradreg" / CHECKPOINT, "ab") as fh:
        fh.write(b"tampered")
    with pytest.raises(CarryError, match="changed since it was carried"):
        unpack(two["long-gradreg"], root)
    assert main(["zoo", "carry", str(path), "--only", "no-such-entry"]) == 2


def test_the_tracked_tree_fits_the_64_mib_that_travels_to_a_gpu_machine():
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    sizes = [(ROOT / name).stat().st_size for name in listed.decode().split("\0") if name and (ROOT / name).is_file()]
    assert len(sizes) > 100 and sum(sizes) < 64 * 2**20
