import json
from dataclasses import replace

import pandas as pd
import pytest
import torch
from torch import nn

from gradviz.cli.main import main
from gradviz.evaluation.report.html import write_report
from gradviz.evaluation.runs.masking import masking_verdict, vanishing_gradient_share
from gradviz.evaluation.runs.matrix import COLUMNS, EvalConfig, evaluate, read_results, write_results
from gradviz.evaluation.runs.stats import wilson_interval
from gradviz.nets.architecture import PaperCNN

pytestmark = [pytest.mark.slow]


@pytest.fixture
def two_models(saved_pair):
    return saved_pair("t", steps=15, width=16)


def test_matrix_schema_intervals_and_cache(two_models, tmp_path):
    config = EvalConfig(dataset="mnist", models=two_models, attacks=["fgsm", "tgsm", "pgd"], eps=[0.0, 0.1, 0.3],
                        n=64, device="cpu", batch_size=32)
    result = evaluate(config, cache_dir=tmp_path / "cache", progress=False)
    rows = result.rows
    assert list(rows.columns) == COLUMNS
    assert len(rows) == 2 * 3 * 3 * 2  # sources × attacks × ε × targets
    assert ((rows.ci_low <= rows.accuracy) & (rows.accuracy <= rows.ci_high)).all()
    assert (rows.whitebox == (rows.source == rows.target)).all()
    clean = rows[rows.eps == 0].groupby("target").accuracy.nunique()
    assert (clean == 1).all()  # ε = 0 is the clean accuracy whatever the source and attack
    fgsm = rows[(rows.attack == "fgsm") & rows.whitebox].sort_values("eps")
    assert fgsm.groupby("source").accuracy.apply(lambda a: a.is_monotonic_decreasing).all()

    again = evaluate(config, cache_dir=tmp_path / "cache", progress=False)
    assert again.provenance["cached_blocks_reused"] == "10/10"  # FGSM and TGSM one block a source, PGD one per ε
    pd.testing.assert_frame_equal(again.rows, rows)
    reordered = evaluate(replace(config, models=list(reversed(two_models))), cache_dir=tmp_path / "cache",
                         progress=False)
    assert reordered.provenance["cached_blocks_reused"] == "10/10"  # the models' order is not part of a block

    write_results(result, tmp_path / "out")
    loaded = read_results(tmp_path / "out")
    assert loaded.rows.shape == rows.shape and set(loaded.provenance["models"]) == set(two_models)
    report = write_report(result, tmp_path / "out")
    text = report.read_text()
    assert "plotly" in text and "Gradient masking" in text and "Deletion" in text

    from gradviz.evaluation.report.reproduction import write_reproduction

    doc = write_reproduction(tmp_path / "out", tmp_path / "out", tmp_path / "REPRODUCTION.md", "preamble text").read_text()
    assert "preamble text" in doc and doc.count("### Which claims held") == 2
    assert "Claim 1 (transfer robustness), gradreg vs normal" in doc
    assert "| t-gradreg | fgsm |" in doc and "(0.992)" not in doc.split("## Fashion")[1]


def test_iterative_attacks_can_run_on_a_smaller_eps_grid(two_models):
    config = EvalConfig(dataset="mnist", models=two_models, attacks=["fgsm", "pgd"], eps=[0.0, 0.1, 0.3],
                        iterative_eps=[0.3], n=32, device="cpu", batch_size=32)
    rows = evaluate(config, progress=False).rows
    assert sorted(rows[rows.attack.eq("fgsm")].eps.unique()) == [0.0, 0.1, 0.3]
    assert sorted(rows[rows.attack.eq("pgd")].eps.unique()) == [0.3]
    assert len(rows) == 2 * (3 + 1) * 2  # sources × (fgsm ε + pgd ε) × targets
    config.iterative_n = 16
    rows = evaluate(config, progress=False).rows
    assert (rows[rows.attack.eq("pgd")].n == 16).all() and (rows[rows.attack.eq("fgsm")].n == 32).all()


def test_jsma_reports_success_rate_and_pixels_changed(two_models, tmp_path):
    config = EvalConfig(dataset="mnist", models=two_models, attacks=["fgsm", "jsma"], eps=[0.0, 0.3], n=32,
                        l0_n=8, device="cpu", batch_size=32)
    result = evaluate(config, progress=False)
    assert set(result.rows.attack) == {"fgsm"}  # JSMA has no ε: it gets its own table
    jsma = result.l0
    assert set(jsma.budget) == {"θ = 1, γ = 0.25"}
    assert len(jsma) == 2 * 2 and (jsma.n == 8).all()
    assert (jsma.whitebox == (jsma.source == jsma.target)).all()
    assert ((jsma.success_rate * 8).round(6) % 1 == 0).all() and (jsma.mean_pixels_changed <= 0.25 * 784).all()
    white = jsma[jsma.whitebox]
    assert (white.success_rate + white.accuracy <= 1).all()  # the target is never the true label
    assert read_results(write_results(result, tmp_path / "r")).l0.equals(jsma)
    with pytest.raises(ValueError, match="unknown attack"):
        evaluate(EvalConfig(dataset="mnist", models=two_models, attacks=["cw"], n=8), progress=False)


def test_wrong_dataset_and_too_many_images(two_models):
    with pytest.raises(ValueError, match="another dataset"):
        evaluate(EvalConfig(dataset="fashion-mnist", models=two_models, n=10), progress=False)
    with pytest.raises(ValueError, match="more than"):
        evaluate(EvalConfig(dataset="mnist", models=two_models, n=10**6), progress=False)


def test_cli_evaluate_writes_csv_json_html(two_models, tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["evaluate", "--dataset", "mnist", "--models", ",".join(two_models), "--attacks", "fgsm,tgsm",
                 "--eps", "0,0.2", "--n", "40", "--device", "cpu", "--out", str(out)])
    assert code == 0
    rows = pd.read_csv(out / "results.csv")
    assert set(rows.attack) == {"fgsm", "tgsm"} and (rows.n == 40).all()
    assert json.loads((out / "provenance.json").read_text())["config"]["n"] == 40
    assert (out / "report.html").stat().st_size > 100_000


def test_wilson_interval_known_values():
    low, high = wilson_interval(50, 100)
    assert low == pytest.approx(0.4038, abs=1e-4) and high == pytest.approx(0.5962, abs=1e-4)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == pytest.approx(1.0)


def test_saturated_model_is_flagged():
    torch.manual_seed(0)
    base = PaperCNN(width=8).eval()
    saturated = nn.Sequential(base, nn.Identity())
    saturated[1] = _Scale(1e6)
    x, y = torch.rand(32, 1, 28, 28), torch.zeros(32, dtype=torch.long)
    y = saturated(x).argmax(1)  # correctly classified with certainty: CE gradient underflows to 0
    assert vanishing_gradient_share(saturated, x, y) > 0.9
    assert vanishing_gradient_share(base, x, y) == 0.0
    flagged, reason = masking_verdict(0.95, 0.99, 0.05)
    assert flagged and "all-zero" in reason and "above" in reason
    assert masking_verdict(0.0, 0.5, 0.4) == (False, "no sign of gradient masking")


class _Scale(nn.Module):
    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor


def test_bf16_counting_agrees_with_fp32(two_models, mnist_test):
    from gradviz import load_model
    from gradviz.evaluation.runs.matrix import correct_counts

    model, _ = load_model(two_models[0])
    x, y = mnist_test
    fp32 = correct_counts(model, x[:500], y[:500], 250)
    bf16 = correct_counts(model, x[:500], y[:500], 250, precision="bf16")
    assert abs(fp32 - bf16) <= 10  # at most 2% of predictions sit close enough to a boundary to flip


def test_claim_verdicts_ignore_noise_and_chance_level():
    from gradviz.evaluation.report.claims import compare as _compare
    eps = (0.3, 0.4, 0.5)
    assert _compare({0.3: 0.7, 0.4: 0.5, 0.5: 0.3}, {0.3: 0.4, 0.4: 0.2, 0.5: 0.1}, eps)[0] == "held"
    verdict, detail = _compare({0.3: 0.28, 0.4: 0.10, 0.5: 0.09}, {0.3: 0.09, 0.4: 0.09, 0.5: 0.09}, eps)
    assert verdict == "partly held" and "chance at ε = 0.4, 0.5" in detail
    assert _compare({0.3: 0.41}, {0.3: 0.40}, eps)[0] == "did not hold"  # inside the noise margin
    assert _compare({0.3: 0.11}, {0.3: 0.03}, eps)[0] == "did not hold"  # both at chance


def test_mnist_targets_read_the_right_cells():
    import pandas as pd

    from gradviz.evaluation.report.claims import Facts, fashion_targets, mnist_targets

    def table_of(targets) -> str:
        return "\n".join(f"| {t.label} | {t.measured} | {'–' if t.met is None else 'yes' if t.met else '**no**'} |"
                         for t in targets)

    names = {d: f"m-{d}" for d in ("normal", "distilled", "advtrain", "gradreg")}
    cells = {("normal", "normal", "fgsm", 0.0): 0.995, ("gradreg", "gradreg", "fgsm", 0.0): 0.989,
             ("advtrain", "advtrain", "fgsm", 0.0): 0.993, ("distilled", "distilled", "fgsm", 0.0): 0.994,
             ("normal", "normal", "fgsm", 0.4): 0.07, ("normal", "gradreg", "fgsm", 0.4): 0.60,
             ("normal", "gradreg", "fgsm", 0.5): 0.40, ("normal", "advtrain", "fgsm", 0.5): 0.39,
             ("advtrain", "advtrain", "fgsm", 0.3): 0.90, ("distilled", "distilled", "tgsm", 0.2): 0.04,
             ("normal", "normal", "fgsm", 0.1): 0.30, ("normal", "gradreg", "fgsm", 0.1): 0.44}
    rows = pd.DataFrame([{"source": names[s], "target": names[t], "attack": a, "eps": e, "accuracy": v}
                         for (s, t, a, e), v in cells.items()])
    table = table_of(mnist_targets(Facts(names, rows, masked={"m-distilled": True})))
    assert "| m-gradreg clean accuracy ≥ 98.8% | 0.989 | yes |" in table
    assert "0.600 vs 0.070 | yes |" in table
    assert "0.400 vs 0.390 | **no** |" in table  # 0.01 is within the 0.02 margin
    assert "0.900 (PGD –) | yes |" in table and "0.040, flagged | yes |" in table
    fashion = table_of(fashion_targets(Facts(names, rows)))
    assert "0.440 vs 0.300 | **no** |" in fashion and "0.989 vs 0.995 | yes |" in fashion


def test_jsma_table_puts_white_box_on_the_diagonal():
    from gradviz.evaluation.report.reproduction import l0_tables
    from gradviz.evaluation.runs.matrix import L0_COLUMNS, EvalResult

    rows = [{"source": s, "target": t, "attack": "jsma", "budget": "θ = 1, γ = 0.25",
             "success_rate": 0.9 if s == t else 0.1, "accuracy": 0.05,
             "mean_pixels_changed": 30.0 if s == "a" else 60.0, "n": 200, "whitebox": s == t}
            for s in ("a", "b") for t in ("a", "b")]
    table = "\n".join(l0_tables(EvalResult(pd.DataFrame(), pd.DataFrame(), {}, pd.DataFrame(rows,
                                                                                         columns=L0_COLUMNS))))
    assert "JSMA (θ = 1, γ = 0.25, first 200 test images)" in table
    assert "| a | 30.0 | **0.900** | 0.100 |" in table and "| b | 60.0 | 0.100 | **0.900** |" in table
    assert l0_tables(EvalResult(pd.DataFrame(), pd.DataFrame(), {})) == []


def test_a_stronger_transfer_attack_is_reported_beside_fgsm_with_a_verdict():
    from gradviz.evaluation.report.reproduction import beyond_the_paper
    from gradviz.evaluation.runs.matrix import EvalResult, _row

    defenses = ["normal", "advtrain", "gradreg"]
    models = {f"m-{d}": {"sha256": d * 3, "defense": d} for d in defenses}
    # FGSM: gradreg holds 0.6 of transferred examples, the others 0.2; MI-FGSM: everyone falls to 0.1.
    fgsm = [_row(f"m-{s}", f"m-{t}", "fgsm", e, 600 if t == "gradreg" else 200, 1000)
            for s in defenses for t in defenses for e in (0.0, 0.3, 0.4, 0.5)]
    mi = [_row(f"m-{s}", f"m-{t}", "mifgsm", e, 100, 1000) for s in defenses for t in defenses for e in (0.3, 0.4, 0.5)]
    main = EvalResult(pd.DataFrame(fgsm), pd.DataFrame(), {"models": models})
    extra = EvalResult(pd.DataFrame(mi), pd.DataFrame(), {"models": models, "device": "cpu", "seconds": 1.0,
                                                          "config": {"attack_params": {}}})
    text = "\n".join(beyond_the_paper(main, extra))
    assert "### MI-FGSM transfer (beyond the paper; steps 10, decay 1, first 1,000 test images" in text
    assert "| m-gradreg | 0.100 [0.083, 0.120] / 0.600 |" in text
    assert "gradreg beats normal on transferred examples at ε = 0.3/0.4/0.5: did not hold" in text
    assert "under FGSM 0.600/0.600/0.600 vs 0.200/0.200/0.200, won at ε = 0.3, 0.4, 0.5" in text
    other = EvalResult(extra.rows, extra.masking, {**extra.provenance,
                                                   "models": {**models, "m-gradreg": {"sha256": "new"}}})
    with pytest.raises(ValueError, match="other weights of m-gradreg"):
        beyond_the_paper(main, other)
