"""AutoAttack and Square through the registry: inside the ε-ball, alone or mixed in an evaluation, and Square
beating every gradient attack raises the masking flag."""
import sys

import pandas as pd
import pytest
import torch

from gradviz.attacks.registry import get_attack
from gradviz.evaluation.report.autoattack import COLUMNS, autoattack_section, whitebox_accuracy
from gradviz.evaluation.runs.masking import masking_verdict
from gradviz.evaluation.runs.matrix import EvalConfig, EvalResult, evaluate

pytestmark = [pytest.mark.slow]

pytest.importorskip("torchattacks")


@pytest.fixture
def small_models(saved_pair):
    return saved_pair("aa", steps=30)


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


def test_a_sweep_passes_the_images_done_on(mnist_test):
    from gradviz import load_model
    model, _ = load_model("mnist-normal")
    done = []
    get_attack("square").sweep(model, mnist_test[0][:12], mnist_test[1][:12], [0.1],
                               progress=lambda d, t: done.append((d, t)), queries=100)
    assert done[-1] == (12, 12)


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
    table = whitebox_accuracy(mixed)
    for model in small_models:  # the gap is the strongest gradient attack's accuracy minus AutoAttack's
        assert table.loc[(model, 0.2), "gap"] == pytest.approx(
            min(white[(model, "fgsm")], white[(model, "pgd")]) - white[(model, "autoattack")])
    section = "\n".join(autoattack_section(mixed))
    assert all(f"| {m} (" in section for m in small_models) and "300 queries" in section


def _result(gradient: float, black_box: float, aa: float) -> EvalResult:
    def row(attack, eps, accuracy):
        return {"source": "m", "target": "m", "attack": attack, "eps": eps, "accuracy": accuracy,
                "correct": int(accuracy * 1000), "n": 1000, "ci_low": accuracy - 0.01, "ci_high": accuracy + 0.01,
                "whitebox": True}
    rows = [row(a, 0.0, 0.99) for a in COLUMNS]
    rows += [row(a, 0.1, v) for a, v in (("fgsm", 0.95), ("pgd", gradient), ("mifgsm", 0.93),
                                         ("square", black_box), ("autoattack", aa))]
    flagged, reason = masking_verdict(0.0, 0.95, gradient, black_box, gradient)
    masking = pd.DataFrame([{"model": "m", "eps": 0.1, "black_box_whitebox": black_box, "flagged": flagged,
                             "reason": reason}])
    provenance = {"config": {"dataset": "mnist"}, "seconds": 12.0,
                  "seconds_per_attack": {"autoattack": {"m": 1800.0}, "square": {"m": 60.0}}}
    return EvalResult(pd.DataFrame(rows), masking, provenance, pd.DataFrame())


def test_the_autoattack_section_says_which_models_our_attacks_overstate():
    honest = "\n".join(autoattack_section(_result(gradient=0.90, black_box=0.91, aa=0.89)))
    assert "No model's robustness was overstated" in honest and "1,800 s" in honest
    overstated = "\n".join(autoattack_section(_result(gradient=0.90, black_box=0.60, aa=0.55)))
    assert "overstated its robustness by up to 0.350" in overstated
    assert "Masking flag for **m**" in overstated and "black-box Square" in overstated


def test_a_run_without_autoattack_is_refused_by_the_section():
    result = _result(0.9, 0.9, 0.9)
    result = EvalResult(result.rows[result.rows.attack != "autoattack"], result.masking, result.provenance,
                        result.l0)
    with pytest.raises(ValueError, match="no AutoAttack"):
        whitebox_accuracy(result)


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


def test_a_run_still_going_on_is_rendered_with_what_it_finished():
    """`evaluate --finished-only` on a run of many hours: the blocks done so far, … for the rest."""
    result = _result(0.9, 0.9, 0.9)
    rows = result.rows[(result.rows.attack != "autoattack") & (result.rows.attack != "square")]
    provenance = {**result.provenance, "blocks_missing": ["m square ε=0.1", "m autoattack ε=0.1", "z fgsm ε=0.1"],
                  "cached_blocks_reused": "3/6", "models": {"m": {}, "z": {}}}
    section = "\n".join(autoattack_section(EvalResult(rows, result.masking, provenance, result.l0)))
    assert "| m (0.990 clean) | 0.1 | 0.950 | 0.900 | 0.930 | … | … | … | … / … |" in section
    assert "In progress: 3 of 6 blocks finished" in section and "nothing yet for z" in section
    assert "No model's robustness was overstated" not in section  # nothing to compare with yet


def test_finished_only_assembles_the_cached_blocks_and_computes_nothing(small_models, tmp_path):
    config = EvalConfig(models=small_models, attacks=["fgsm"], eps=[0, 0.2], n=12, device="cpu")
    done = evaluate(config, cache_dir=tmp_path, progress=False)
    cached = sorted(tmp_path.iterdir())
    config.attacks = ["fgsm", "pgd"]
    partial = evaluate(config, cache_dir=tmp_path, progress=False, finished_only=True)
    assert sorted(tmp_path.iterdir()) == cached  # no PGD block was computed
    assert set(partial.rows.attack) == {"fgsm"} and partial.rows.accuracy.tolist() == done.rows.accuracy.tolist()
    assert len(partial.provenance["blocks_missing"]) == 2 * 2  # PGD: one block per source and ε
    assert all(" pgd ε=" in b for b in partial.provenance["blocks_missing"])


def test_the_black_box_check_looks_at_every_eps_not_only_the_fgsm_one():
    """Square beating the gradient attacks at ε = 0.1 is flagged even though the FGSM comparison is at ε = 0.3."""
    from gradviz.evaluation.runs.matrix import _black_box_gap

    rows = pd.DataFrame([{"attack": a, "eps": e, "accuracy": v} for a, e, v in (
        ("fgsm", 0.1, 0.93), ("pgd", 0.1, 0.90), ("square", 0.1, 0.80),
        ("fgsm", 0.3, 0.20), ("pgd", 0.3, 0.00), ("square", 0.3, 0.01), ("pgd", 0.2, 0.3))])
    assert _black_box_gap(rows) == (0.1, 0.80, 0.90)
    assert _black_box_gap(rows[rows.attack != "square"]) == (None, None, None)
    flagged, reason = masking_verdict(0.0, 0.20, 0.00, 0.80, 0.90, black_box_eps=0.1)
    assert flagged and "0.80 at ε = 0.1" in reason
