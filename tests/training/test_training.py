import pytest
import torch

from gradviz import load_dataset
from gradviz.cli.main import build_parser
from gradviz.data.datasets import load_masks
from gradviz.training.config import TrainConfig, comparable_settings, run_steps, steps_per_epoch, total_steps
from gradviz.training.defenses import DEFENSE_SPECS, DEFENSES, MASKED, REGULARIZED, SETTINGS
from gradviz.training.loop import (
    TrainingCancelled,
    _epoch_order,
    batch_index,
    random_shift,
    train_and_save,
    train_model,
)


def _data_for(defense: str, tiny_train) -> tuple[str, tuple]:
    """MNIST digits, or for a masked defense Decoy MNIST digits with their swatch masks."""
    if defense not in MASKED:
        return "mnist", tiny_train
    x, y = load_dataset("decoy-mnist", "train")
    return "decoy-mnist", (x[:512], y[:512], load_masks("decoy-mnist", "train")[:512])


@pytest.mark.slow
@pytest.mark.parametrize("defense", DEFENSES)
def test_each_defense_trains_a_few_steps(defense, tiny_train):
    dataset, data = _data_for(defense, tiny_train)
    config = TrainConfig(dataset=dataset, defense=defense, lam=1.0, steps=3, batch_size=64, device="cpu", width=16,
                         penalty="finite-difference" if defense == "gradreg" else "exact")
    seen = []
    model, card = train_model(config, train_data=data, progress=False,
                              on_step=lambda step, total, stats: seen.append((step, total, stats)))
    assert not model.training
    phases = 2 if defense == "distilled" else 1
    assert [s[0] for s in seen] == [1, 2, 3] * phases
    assert all(torch.isfinite(torch.tensor(s[2]["loss"])) for s in seen)
    assert (seen[0][2]["penalty"] > 0) == (defense in REGULARIZED)
    test_x, test_y = load_dataset(dataset, "test")
    with torch.no_grad():  # counted here by hand, not with the function the card used
        correct = sum(int((model(test_x[i:i + 500]).argmax(1) == test_y[i:i + 500]).sum())
                      for i in range(0, len(test_x), 500))
    assert card["defense"] == defense and card["clean_test_accuracy"] == pytest.approx(correct / len(test_x), abs=1e-12)
    assert card["temperature"] == (50.0 if defense == "distilled" else 1.0)
    assert card["eps"] == (0.3 if defense in ("advtrain", "gradreg+advtrain") else None)


@pytest.mark.slow
def test_training_is_deterministic_for_a_seed(tiny_train):
    config = TrainConfig(defense="gradreg", lam=1.0, steps=4, batch_size=64, device="cpu", width=16, augment=True)
    a, _ = train_model(config, train_data=tiny_train, progress=False)
    b, _ = train_model(config, train_data=tiny_train, progress=False)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k


@pytest.mark.slow
def test_training_learns(tiny_train):
    config = TrainConfig(steps=60, batch_size=64, device="cpu", width=32)
    _, card = train_model(config, train_data=tiny_train, progress=False)
    assert card["clean_test_accuracy"] > 0.6  # chance is 0.1


def test_cancel_saves_nothing(tiny_train, user_models):
    config = TrainConfig(steps=50, batch_size=64, device="cpu", width=16)
    calls = []
    with pytest.raises(TrainingCancelled):
        train_and_save(config, train_data=tiny_train, progress=False,
                       should_stop=lambda: calls.append(1) or len(calls) > 2)
    assert not user_models.exists() or not any(user_models.iterdir())


@pytest.mark.parametrize("bad", [dict(defense="gradreg", lam=0.0), dict(defense="magic"), dict(steps=0),
                                 dict(batch_size=0), dict(temperature=0)])
def test_bad_configs_are_refused(bad):
    with pytest.raises(ValueError):
        TrainConfig(**bad).validate()


def test_random_shift_moves_whole_pixels():
    x = torch.zeros(64, 1, 28, 28)
    x[:, :, 14, 14] = 1.0
    shifted = random_shift(x, torch.Generator().manual_seed(0))
    assert torch.equal(shifted.flatten(1).sum(1), torch.ones(64))  # one pixel lit, moved not blurred
    assert (shifted[:, 0, 14, 14] == 0).any()


def test_sweep_choice_rule():
    from gradviz.experiments.sweep import choose

    def row(defense, lam, clean, transfer):
        return {"defense": defense, "lam": lam, "seed": 0, "clean": clean,
                **{f"transfer@{e:g}": transfer for e in (0.1, 0.2, 0.3, 0.4, 0.5)}}

    rows = [row("normal", 0, 0.99, 0.1), row("gradreg", 1, 0.985, 0.3), row("gradreg", 3, 0.986, 0.5),
            row("gradreg", 10, 0.984, 0.9)]
    assert choose(rows, "gradreg")["lam"] == 3  # most robust within half a point of clean accuracy
    costly = [row("normal", 0, 0.99, 0.1), row("gradreg", 1, 0.97, 0.3), row("gradreg", 3, 0.96, 0.5)]
    assert choose(costly, "gradreg")["lam"] == 1  # none within half a point: the cheapest in accuracy


def test_every_step_of_gradient_regularized_training_draws_a_fresh_dropout_mask():
    """Regression: the finite-difference replay once restored the RNG, freezing one dropout mask for a whole run."""
    from gradviz.nets.architecture import PaperCNN
    from gradviz.training.defenses import LossSettings, batch_loss

    torch.manual_seed(0)
    model = PaperCNN(width=16).train()
    masks = []
    model.classifier[4].register_forward_hook(lambda _m, inp, out: masks.append((out == 0) & (inp[0] != 0)))
    x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
    for penalty in ("exact", "finite-difference"):
        masks.clear()
        for _ in range(2):
            batch_loss(model, x, y, LossSettings(defense="gradreg", lam=1.0, penalty=penalty))
        passes = len(masks) // 2
        assert not torch.equal(masks[0], masks[passes])  # a new mask at the next step
        if penalty == "finite-difference":
            assert torch.equal(masks[0], masks[1])  # the replayed pass reuses the step's own mask


@pytest.mark.parametrize("defense", ["advtrain", "gradreg+advtrain"])
def test_adversarial_training_normalises_clean_and_adversarial_examples_together(defense):
    """Regression: an all-adversarial batch normalised by its own statistics taught robustness only in that mode."""
    from torch import nn

    from gradviz.attacks.linf import fgsm
    from gradviz.nets.architecture import PaperCNN
    from gradviz.training.defenses import LossSettings, adversarial_examples, batch_loss

    torch.manual_seed(0)
    model = PaperCNN(width=16).train()
    norm = next(m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm))
    seen = []
    norm.register_forward_hook(lambda m, inp, _out: seen.append((m.training, len(inp[0]))))
    x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
    batch_loss(model, x, y, LossSettings(defense=defense, lam=1.0, eps=0.3))
    assert model.training
    assert {size for training, size in seen if training} == {16}  # one joined pass: 8 clean + 8 adversarial
    assert {size for training, size in seen if not training} == {8}  # the attack itself, in evaluation mode

    adv = adversarial_examples(model, x, 0.3)
    assert model.training
    model.eval()
    with torch.no_grad():
        predicted = model(x).argmax(1)
    assert torch.equal(adv, fgsm(model, x, predicted, 0.3))  # what a test-time attacker makes


def test_every_defense_setting_is_a_config_field_with_a_cli_flag_and_in_range_default():
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    flags = {a.option_strings[0]: a for a in train._actions if a.option_strings}
    defaults = TrainConfig(device="cpu")
    for setting in SETTINGS.values():
        assert flags[setting.flag].default == getattr(defaults, setting.name), setting.name
        assert setting.suggested in setting.choices if setting.choices else setting.low <= setting.suggested <= setting.high
    for spec in DEFENSE_SPECS.values():
        assert set(spec.settings) <= set(SETTINGS), spec.name


def test_a_setting_out_of_its_specs_range_is_refused_only_for_defenses_that_take_it():
    with pytest.raises(ValueError, match=r"--lam-warmup must lie in \[0, 1\], got 1.5"):
        TrainConfig(defense="gradreg", lam=1, lam_warmup=1.5, device="cpu").validate()
    TrainConfig(defense="normal", lam_warmup=1.5, device="cpu").validate()  # ignored by a normal model
    with pytest.raises(ValueError, match="unknown defense 'gradreg-y'; choose one of normal, gradreg"):
        TrainConfig(defense="gradreg-y", device="cpu").validate()


def test_settings_a_defense_ignores_do_not_make_two_runs_differ():
    a = TrainConfig(defense="normal", eps=0.1, temperature=3, device="cpu").settings()
    b = TrainConfig(defense="normal", device="cpu").settings()
    assert a != b and comparable_settings(a) == comparable_settings(b)
    c = TrainConfig(defense="advtrain", eps=0.1, device="cpu").settings()
    assert comparable_settings(c) != comparable_settings(TrainConfig(defense="advtrain", device="cpu").settings())


def test_one_meaning_of_an_epoch_for_the_sampler_and_the_run_length():
    """70 epochs at batch 256 over 60,000 digits: 234 full batches an epoch (the short last one dropped)."""
    assert steps_per_epoch(60_000, 256) == 234 and steps_per_epoch(10, 256) == 1
    config = TrainConfig(epochs=70, batch_size=256, device="cpu")
    assert total_steps(config, 60_000) == 16_380
    assert run_steps(TrainConfig(defense="distilled", epochs=2, batch_size=256, device="cpu"), 60_000) == 2 * 468
    first_epoch = torch.cat([batch_index(600, 256, 0, s) for s in (1, 2)])
    assert len(set(first_epoch.tolist())) == 512  # steps 1–2 are one epoch: no digit drawn twice
    assert torch.equal(batch_index(600, 256, 0, 3), _epoch_order(600, 0, 1)[:256])  # step 3: the next epoch
