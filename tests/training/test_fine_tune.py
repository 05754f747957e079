"""Fine-tuning from annotations: the run the Annotate page starts is a plain TrainConfig the CLI can repeat, and it
starts from the model's own weights."""
import numpy as np
import pytest
import torch

from gradviz.data.annotations import from_generated_masks, save_annotations
from gradviz.data.datasets import load_masks
from gradviz.nets.cards import list_models
from gradviz.nets.mlp import MLP
from gradviz.nets.store import load_model
from gradviz.training.config import TrainConfig
from gradviz.training.fine_tune import fine_tune_config
from gradviz.training.loop import train_and_save


def _annotations(tmp_path) -> str:
    masks = load_masks("decoy-mnist", "train")[:64, 0].numpy()
    return str(save_annotations(from_generated_masks("decoy-mnist", masks, np.arange(8)), tmp_path / "a.npz"))


def test_a_zoo_cnn_is_fine_tuned_from_its_weights_and_the_card_says_from_which_annotations(tmp_path):
    card = next(c for c in list_models() if c["name"] == "decoy-mnist-normal")
    config = fine_tune_config(card, _annotations(tmp_path), "rrr", steps=3, name="fixed")
    assert (config.init_from, config.width, config.lam) == ("decoy-mnist-normal", 32, 0.0154)
    config = TrainConfig(**{**config.__dict__, "train_subset": 64})
    _, fixed = train_and_save(config, progress=False)
    assert fixed["init_from"]["name"] == "decoy-mnist-normal" and fixed["annotations"]["images"] == 8
    assert len(fixed["annotations"]["sha256"]) == 64
    with pytest.raises(ValueError, match="takes counterexamples, rrr, rrr-g"):
        fine_tune_config(card, "x.npz", "gradreg", steps=3)


def test_an_outside_architecture_is_fine_tuned_by_its_registered_name(tmp_path):
    config = TrainConfig(dataset="decoy-mnist", model="gradviz.nets.mlp:MLP", steps=2, batch_size=32, name="mlp",
                         train_subset=64, device="cpu")
    _, card = train_and_save(config, progress=False)
    model, _ = load_model("mlp")
    assert isinstance(model.net, MLP)
    tuned = fine_tune_config(card, _annotations(tmp_path), "counterexamples", steps=2, name="mlp-fixed")
    assert tuned.model == "mlp" and tuned.init_from is None
    _, after = train_and_save(TrainConfig(**{**tuned.__dict__, "train_subset": 64}), progress=False)
    before_weights = torch.cat([p.flatten() for p in model.parameters()])
    after_weights = torch.cat([p.flatten() for p in load_model("mlp-fixed")[0].parameters()])
    assert after["defense"] == "counterexamples" and not torch.equal(before_weights, after_weights)


def test_the_cli_fine_tunes_from_annotations_keeping_the_init_models_architecture(tmp_path, capsys):
    from gradviz.cli.main import main

    path = _annotations(tmp_path)
    assert main(["train", "--dataset", "decoy-mnist", "--defense", "rrr", "--lam", "0.0154", "--annotations", path,
                 "--init-from", "decoy-mnist-normal", "--steps", "2", "--train-subset", "64", "--name", "cli-fixed",
                 "--device", "cpu"]) == 0
    _, card = load_model("cli-fixed")
    assert card["architecture"]["width"] == 32 and card["annotations"]["file"] == "a.npz"
    assert main(["train", "--dataset", "mnist", "--defense", "normal", "--annotations", path, "--steps", "1"]) == 2
    assert "--annotations go with a defense that uses them" in capsys.readouterr().err
