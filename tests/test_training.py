import pytest
import torch

from gradviz.defenses import DEFENSES
from gradviz.training import TrainConfig, TrainingCancelled, random_shift, train_and_save, train_model


@pytest.mark.parametrize("defense", DEFENSES)
def test_each_defense_trains_a_few_steps(defense, tiny_train):
    config = TrainConfig(defense=defense, lam=1.0, steps=3, batch_size=64, device="cpu", width=16,
                         penalty="finite-difference" if defense == "gradreg" else "exact")
    seen = []
    model, card = train_model(config, train_data=tiny_train, progress=False,
                              on_step=lambda step, total, stats: seen.append((step, total, stats)))
    assert not model.training
    phases = 2 if defense == "distilled" else 1
    assert [s[0] for s in seen] == [1, 2, 3] * phases
    assert all(torch.isfinite(torch.tensor(s[2]["loss"])) for s in seen)
    assert (seen[0][2]["penalty"] > 0) == (defense.startswith("gradreg"))
    assert card["defense"] == defense and 0.0 <= card["clean_test_accuracy"] <= 1.0
    assert card["temperature"] == (50.0 if defense == "distilled" else 1.0)


def test_training_is_deterministic_for_a_seed(tiny_train):
    config = TrainConfig(defense="gradreg", lam=1.0, steps=4, batch_size=64, device="cpu", width=16, augment=True)
    a, _ = train_model(config, train_data=tiny_train, progress=False)
    b, _ = train_model(config, train_data=tiny_train, progress=False)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k


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
    from gradviz.sweep import choose

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
    from gradviz.architecture import PaperCNN
    from gradviz.defenses import LossSettings, batch_loss

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

    from gradviz.architecture import PaperCNN
    from gradviz.attacks import fgsm
    from gradviz.defenses import LossSettings, adversarial_examples, batch_loss

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
