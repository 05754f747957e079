"""Every registered attack, alone and all together, through every surface that makes adversarial examples:
evaluate (library and CLI), target grids (library and CLI) and study stimuli. The Attack lab's AppTest over the
registry is in test_app.py. A new registry entry is tested here without touching this file."""
import json

import pytest
import torch

from gradviz.attacks.grids import target_grid
from gradviz.attacks.registry import REGISTRY, get_attack
from gradviz.cli.main import main
from gradviz.evaluation.runs.matrix import EvalConfig, evaluate
from gradviz.nets.store import load_model, save_model
from gradviz.study.stimuli import StimulusConfig, build_stimuli
from gradviz.training.config import TrainConfig
from gradviz.training.loop import train_model

ATTACKS = list(REGISTRY)
# Cheaper settings for tiny models; an attack missing here runs at its defaults.
FAST = {"itgsm": {"steps": 2}, "pgd": {"steps": 2}, "mifgsm": {"steps": 2}, "jsma": {"gamma": 0.02}}


def fast(attack: str) -> dict:
    return FAST.get(attack, {})


def cli_params(attacks: list[str]) -> list[str]:
    return [arg for a in attacks for k, v in fast(a).items() for arg in ("--param", f"{a}.{k}={v}")]


@pytest.fixture(scope="module")
def trained(mnist_test) -> list[tuple]:
    """Two tiny models, trained once for the module (training and its card's accuracy take seconds)."""
    data = mnist_test[0][:512], mnist_test[1][:512]
    return [train_model(TrainConfig(defense=defense, lam=lam, steps=5, batch_size=64, width=8, device="cpu",
                                    name=f"e-{defense}"), data, progress=False)
            for defense, lam in (("normal", 0.0), ("gradreg", 1.0))]


@pytest.fixture
def tiny(trained, user_models) -> list[str]:
    """The tiny models saved into this test's own user-model folder."""
    for model, card in trained:
        save_model(model, dict(card), user_models)
    return [card["name"] for _, card in trained]


def test_the_registry_checks_settings_and_knows_every_attack():
    assert {"fgsm", "tgsm", "itgsm", "pgd", "mifgsm", "jsma"} <= set(REGISTRY)
    with pytest.raises(ValueError, match="unknown attack 'cw'; choose from fgsm"):
        get_attack("cw")
    with pytest.raises(ValueError, match="mifgsm has no setting gamma; its settings: steps, decay"):
        get_attack("mifgsm").settings({"gamma": 1})
    with pytest.raises(ValueError, match="steps must be a whole number"):
        get_attack("pgd").settings({"steps": 2.5})
    with pytest.raises(ValueError, match="theta must be one of"):
        get_attack("jsma").settings({"theta": 0.3})
    with pytest.raises(ValueError, match="needs an ε between 0 and 1"):
        get_attack("fgsm").check_eps(None)
    assert get_attack("pgd").settings() == {"steps": 20, "step_scale": 0.125, "random_start": True}
    assert get_attack("jsma").settings({"gamma": "0.1"}) == {"theta": 1.0, "gamma": 0.1}
    for entry in REGISTRY.values():
        assert all(p.low <= p.default <= p.high or p.default in p.choices for p in entry.params), entry.name
        assert entry.eps_bounded or entry.budget_param in {p.name for p in entry.params}, entry.name


@pytest.mark.slow
@pytest.mark.parametrize("attack", ATTACKS)
def test_each_attack_makes_bounded_images_of_the_batch(attack, mnist_test):
    model = load_model("mnist-normal")[0]
    x, y = mnist_test[0][:6], mnist_test[1][:6]
    entry = get_attack(attack)
    labels = (y + 1) % 10 if entry.targeted else y
    adv = entry.generate(model, x, labels, 0.2 if entry.eps_bounded else None, **fast(attack))
    assert adv.shape == x.shape and adv.min() >= 0 and adv.max() <= 1 and not torch.equal(adv, x)
    if entry.eps_bounded:
        assert (adv - x).abs().max() <= 0.2 + 1e-6
        assert torch.equal(entry.generate(model, x, labels, 0.0, **fast(attack)), x)
        sweep = entry.sweep(model, x, labels, [0.1, 0.2], **fast(attack))
        assert list(sweep) == [0.1, 0.2]
        for eps, images in sweep.items():  # each ε of the sweep is its own ball, not the largest one's
            assert (images - x).abs().max() <= eps + 1e-6 and images.min() >= 0 and images.max() <= 1
        if entry.one_gradient:  # a sweep of its own (one shared gradient): it must agree with generate
            assert torch.allclose(sweep[0.2], adv, atol=1e-6)
    else:
        budget = entry.settings(fast(attack))[entry.budget_param] * 784
        assert ((adv != x).flatten(1).sum(1) <= budget).all()


@pytest.mark.slow
@pytest.mark.parametrize("attack", ATTACKS)
def test_each_attack_alone_through_evaluate_on_the_cli(attack, tiny, tmp_path, capsys):
    out = tmp_path / attack
    code = main(["evaluate", "--models", ",".join(tiny), "--attacks", attack, "--eps", "0,0.2", "--n", "12",
                 "--l0-n", "4", "--device", "cpu", "--no-report", "--out", str(out), *cli_params([attack])])
    printed = capsys.readouterr().out
    assert code == 0
    if get_attack(attack).eps_bounded:
        assert "white-box accuracy" in printed and (out / "results.csv").is_file()
    else:
        assert f"{attack} success rate" in printed and (out / "l0.csv").is_file()


@pytest.mark.slow
def test_every_attack_together_in_one_evaluation(tiny):
    config = EvalConfig(models=tiny, attacks=ATTACKS, eps=[0.0, 0.2], n=12, l0_n=4, device="cpu",
                        attack_params={a: fast(a) for a in ATTACKS if fast(a)})
    result = evaluate(config, progress=False)
    eps_attacks = [a for a in ATTACKS if get_attack(a).eps_bounded]
    assert list(result.rows.attack.unique()) == eps_attacks and len(result.rows) == len(eps_attacks) * 2 * 2 * 2
    assert set(result.l0.attack) == set(ATTACKS) - set(eps_attacks)
    with pytest.raises(ValueError, match="does not include"):
        evaluate(EvalConfig(models=tiny, attacks=["fgsm"], attack_params={"pgd": {"steps": 3}}), progress=False)


@pytest.mark.slow
@pytest.mark.parametrize("attack", ATTACKS)
def test_each_attack_makes_a_target_grid(attack, tiny, mnist_test, tmp_path, capsys):
    models = {n: load_model(n)[0] for n in tiny}
    x, y = mnist_test[0][:2], mnist_test[1][:2]
    entry = get_attack(attack)
    grid = target_grid(models, x, y, attack, params=fast(attack))
    columns = 10 if entry.targeted else 1
    assert grid.images[tiny[0]].shape[1:] == (2, columns, 28, 28)
    assert grid.targeted == entry.targeted and grid.counted().shape == (2, columns)
    wrong = int((models[tiny[0]](x).argmax(1) != y).sum())  # iteration 0: only misclassified originals count
    assert grid.success_share(grid.predicted[tiny[0]][0]) == pytest.approx(wrong / (2 * (9 if entry.targeted else 1)))
    code = main(["grid", "--models", tiny[0], "--attack", attack, "--iteration", "1", "--out", str(tmp_path),
                 *cli_params([attack])])
    assert code == 0 and "cells" in capsys.readouterr().out
    record = json.loads(next(tmp_path.glob(f"*-{attack}-it1.json")).read_text())
    assert record["attack"] == attack and len(record["predicted"][0]) == columns


@pytest.mark.slow
@pytest.mark.parametrize("attacks", [[a] for a in ATTACKS] + [ATTACKS], ids=[*ATTACKS, "all"])
def test_study_stimuli_from_any_attack_or_mix(attacks, tiny):
    config = StimulusConfig(models=tiny, attacks=attacks, eps=[0.2, 0.3], items_per_class=1, attention_checks=1,
                            attack_params={a: fast(a) for a in attacks if fast(a)})
    rows = [r for r in build_stimuli(config) if r["kind"] == "adversarial"]
    per_model = sum(2 if get_attack(a).eps_bounded else 1 for a in attacks)
    assert len(rows) == 10 * len(tiny) * per_model
    assert len({r["condition"] for r in rows}) == len(tiny) * per_model
    for r in rows:
        provenance = json.loads(r["provenance"])
        assert provenance["attack"] == r["attack"] and provenance["reference"]
        assert (r["target_class"] is None) != get_attack(r["attack"]).targeted
