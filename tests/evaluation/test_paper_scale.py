"""The headline at paper scale: FGSM from the same architecture and from the zoo's source, white-box attacks,
gradients, and the zoo decision, rendered from a real (tiny) evaluate run."""
import json

import pandas as pd
import pytest

from gradviz.evaluation.report.html import write_report
from gradviz.evaluation.report.paper_scale import Pair, joins_zoo, paper_scale_lines
from gradviz.evaluation.report.reproduction import write_reproduction
from gradviz.evaluation.runs.matrix import EvalConfig, EvalResult, evaluate, read_results, write_results

pytestmark = [pytest.mark.slow]

PAIR = Pair(gradreg="ps-gradreg", source="ps-normal")


@pytest.fixture
def pair_run(saved_pair, tmp_path):
    saved_pair("ps")
    result = evaluate(EvalConfig(models=["ps-normal", "ps-gradreg", "mnist-normal"], attacks=["fgsm", "pgd"],
                                 eps=[0, 0.1, 0.4], iterative_eps=[0.1], n=40, device="cpu"), progress=False)
    folder = write_results(result, tmp_path / "pair")
    write_report(result, folder)
    return folder


def test_the_section_shows_both_sources_the_attacks_and_the_decision(pair_run, tmp_path):
    result = read_results(pair_run)
    text = "\n".join(paper_scale_lines(pair_run, PAIR))
    same = result.rows.query("source == 'ps-normal' and target == 'ps-gradreg' and attack == 'fgsm' and eps == 0.4")
    assert f"**{same.accuracy.iloc[0]:.3f} [" in text
    assert "FGSM made on ps-normal" in text and "FGSM made on mnist-normal" in text
    assert "PGD ε=0.1" in text and "deletion area" in text
    assert "stays out of the zoo" in text  # 20 steps of training are far from 98.8% clean
    report = write_reproduction("docs/results/mnist", None, tmp_path / "R.md", paper_scale=None)
    assert "paper scale" not in report.read_text()


def test_an_evaluation_without_the_pair_is_refused(pair_run):
    with pytest.raises(ValueError, match="holds no mnist-gradreg-paper"):
        paper_scale_lines(pair_run)


def _rows(headline: float, clean: float) -> EvalResult:
    def row(source, target, eps, accuracy):
        return {"source": source, "target": target, "attack": "fgsm", "eps": eps, "accuracy": accuracy,
                "correct": int(accuracy * 10000), "n": 10000, "ci_low": accuracy, "ci_high": accuracy,
                "whitebox": source == target}
    rows = [row("ps-gradreg", "ps-gradreg", 0.0, clean), row("ps-normal", "ps-gradreg", 0.4, headline)]
    return EvalResult(pd.DataFrame(rows), pd.DataFrame(), {}, pd.DataFrame())


@pytest.mark.parametrize(("headline", "clean", "joins"), [(0.50, 0.988, True), (0.499, 0.99, False),
                                                          (0.70, 0.987, False)])
def test_the_zoo_rule_needs_both_the_headline_and_the_clean_accuracy(headline, clean, joins):
    ok, why = joins_zoo(_rows(headline, clean), PAIR)
    assert ok is joins and f"{headline:.3f}" in why


def test_a_run_still_going_on_says_what_is_not_computed_yet(pair_run):
    provenance = json.loads((pair_run / "provenance.json").read_text())
    (pair_run / "provenance.json").write_text(json.dumps({**provenance, "blocks_missing": ["ps-gradreg pgd ε=0.1"]}))
    text = "\n".join(paper_scale_lines(pair_run, PAIR))
    assert "In progress: not computed yet (– above): ps-gradreg pgd ε=0.1" in text
