"""AutoAttack and Square through the registry: inside the ε-ball, alone or mixed in an evaluation, and Square
beating every gradient attack raises the masking flag."""
import sys

import pytest
import torch

from gradviz.attacks.registry import get_attack
from gradviz.evaluation.masking import masking_verdict
from gradviz.evaluation.matrix import EvalConfig, evaluate
from gradviz.nets.store import save_model
from gradviz.training.config import TrainConfig
from gradviz.training.loop import train_model

pytest.importorskip("torchattacks")


@pytest.fixture
def small_models(user_models, tiny_train):
    for name, defense, lam in (("aa-normal", "normal", 0.0), ("aa-gradreg", "gradreg", 1.0)):
        model, card = train_model(TrainConfig(defense=defense, lam=lam, steps=30, batch_size=64, width=8,
                                              device="cpu", name=name), tiny_train, progress=False)
        save_model(model, card, user_models)
    return ["aa-normal", "aa-gradreg"]


@pytest.mark.parametrize("attack", ["autoattack", "square"])
def test_examples_stay_in_the_eps_ball_and_the_data_range(attack, mnist_test):
    from gradviz import load_model
    model, _ = load_model("mnist-normal")
    x, y = mnist_test[0][:12], mnist_test[1][:12]
    done = []
    adv = get_attack(attack).generate(model, x, y, 0.1, seed=0, progress=lambda d, t: done.append((d, t)),
                                      **({"queries": 200} if attack == "square" else {}))
    assert float((adv - x).abs().max()) <= 0.1 + 1e-6 and 0 <= float(adv.min()) and float(adv.max()) <= 1
    assert done[-1] == (12, 12)
    with torch.no_grad():
        assert (model(adv).argmax(1) == y).float().mean() < (model(x).argmax(1) == y).float().mean()


def test_autoattack_alone_and_mixed_with_other_attacks_evaluate_without_a_crash(small_models):
    alone = evaluate(EvalConfig(models=small_models, attacks=["autoattack"], eps=[0.2], n=12, device="cpu"),
                     progress=False)
    assert set(alone.rows.attack) == {"autoattack"} and len(alone.masking) == 2
    mixed = evaluate(EvalConfig(models=small_models, attacks=["fgsm", "pgd", "square", "autoattack"], eps=[0, 0.2],
                                n=12, device="cpu", attack_params={"square": {"queries": 300}}), progress=False)
    white = mixed.rows[mixed.rows.whitebox & (mixed.rows.eps == 0.2)].set_index(["source", "attack"]).accuracy
    for model in small_models:  # AutoAttack contains Square and APGD: never weaker than either alone
        assert white[(model, "autoattack")] <= min(white[(model, "square")], white[(model, "pgd")]) + 1e-9
    assert "black_box_whitebox" in mixed.masking.columns


def test_square_doing_better_than_every_gradient_attack_is_flagged_as_masking():
    flagged, reason = masking_verdict(0.0, 0.6, 0.55, black_box_accuracy=0.20, best_gradient_accuracy=0.55)
    assert flagged and "Square" in reason
    assert not masking_verdict(0.0, 0.6, 0.55, black_box_accuracy=0.54, best_gradient_accuracy=0.55)[0]


def test_a_missing_torchattacks_is_a_clear_error(monkeypatch, mnist_test):
    from gradviz import load_model
    monkeypatch.setitem(sys.modules, "torchattacks", None)
    model, _ = load_model("mnist-normal")
    with pytest.raises(RuntimeError, match="pip install --no-deps torchattacks==3.5.1"):
        get_attack("autoattack").generate(model, mnist_test[0][:2], mnist_test[1][:2], 0.1)
