"""The paper's headline on its own terms: the paper-scale pair (`mnist-normal-paper`, `mnist-gradreg-paper`: the
reference layers, FC 1,024, λ_ref 56,234, 70 epochs) attacked with FGSM made on the same architecture, as the
paper did, and on the zoo's normal model beside it, since transfer between architectures is weaker and flatters the
defended model.

Reads one `evaluate` run holding both pairs of models; renders the section "The headline at paper scale" and the
zoo decision (does the paper-scale model keep ≥ 0.50 at ε = 0.4 with ≥ 98.8% clean accuracy?).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from gradviz.evaluation.report.claims import THRESHOLDS, accuracy_row
from gradviz.evaluation.report.html import read_gradient_summary
from gradviz.evaluation.report.tables import markdown_table
from gradviz.evaluation.runs.matrix import EvalResult, read_results
from gradviz.evaluation.runs.paper import PAPER_FGSM_FROM_NORMAL

HEADLINE_EPS = 0.4


@dataclass(frozen=True)
class Pair:
    """Who is attacked and with whose examples."""

    gradreg: str = "mnist-gradreg-paper"
    source: str = "mnist-normal-paper"  # the same architecture: the paper's setup
    zoo_source: str = "mnist-normal"  # the zoo's transfer source
    zoo_gradreg: str = "mnist-gradreg"  # the committed zoo's Grad Reg (y), for comparison


def _ci(row: pd.Series | None) -> str:
    return "–" if row is None else f"{row.accuracy:.3f} [{row.ci_low:.3f}, {row.ci_high:.3f}]"


def _models(result: EvalResult, pair: Pair) -> list[str]:
    present = set(result.rows.source) | set(result.rows.target)
    missing = [m for m in (pair.gradreg, pair.source) if m not in present]
    if missing:
        raise ValueError(f"this evaluation holds no {', '.join(missing)}; evaluate them with --models")
    return [m for m in (pair.source, pair.gradreg, pair.zoo_source, pair.zoo_gradreg) if m in present]


def joins_zoo(result: EvalResult, pair: Pair = Pair()) -> tuple[bool, str]:
    """The issue's rule: ≥ THRESHOLDS.headline_min of the same-architecture source's FGSM at ε = 0.4 and
    ≥ THRESHOLDS.clean_floor_regularized clean accuracy."""
    headline = accuracy_row(result.rows, pair.source, pair.gradreg, "fgsm", HEADLINE_EPS)
    clean = accuracy_row(result.rows, pair.gradreg, pair.gradreg, "fgsm", 0.0)
    if headline is None or clean is None:
        raise ValueError(f"the run holds no FGSM at ε = 0 and {HEADLINE_EPS} from {pair.source} on {pair.gradreg}")
    ok = bool(headline.accuracy >= THRESHOLDS.headline_min and clean.accuracy >= THRESHOLDS.clean_floor_regularized)
    why = (f"{pair.gradreg} keeps {headline.accuracy:.3f} of {pair.source}'s FGSM at ε = {HEADLINE_EPS} "
           f"(needs ≥ {THRESHOLDS.headline_min}) with {clean.accuracy:.2%} clean (needs ≥ "
           f"{THRESHOLDS.clean_floor_regularized:.1%})")
    return ok, why


def _transfer_table(result: EvalResult, models: list[str], source: str) -> list[str]:
    eps = sorted(e for e in result.rows[result.rows.attack.eq("fgsm")].eps.unique() if e > 0)
    lines = markdown_table([f"evaluated on \\ ε (FGSM made on {source})", *(f"{e:g}" for e in eps)],
                           ([target, *(_ci(accuracy_row(result.rows, source, target, "fgsm", e)) for e in eps)]
                            for target in models))
    return [*lines, ""]


def _whitebox_table(result: EvalResult, models: list[str]) -> list[str]:
    white = result.rows[result.rows.whitebox & (result.rows.eps > 0) & result.rows.attack.isin(("pgd", "mifgsm"))]
    eps = sorted(white.eps.unique())
    if not eps:
        return []
    rows = [[m, *(f"{r.accuracy:.3f}" if (r := accuracy_row(result.rows, m, m, a, e)) is not None else "–"
                  for e in eps for a in ("fgsm", "pgd", "mifgsm"))] for m in models]
    lines = markdown_table(["model", *(f"{a} ε={e:g}" for e in eps for a in ("FGSM", "PGD", "MI-FGSM"))], rows)
    return [f"White-box accuracy (first {int(white.n.iloc[0]):,} test images):", "", *lines, ""]


def _explanations(folder: Path, models: list[str]) -> list[str]:
    summary = read_gradient_summary(folder)
    if summary is None:
        return []
    norms, area = summary
    kinds = list(norms.columns)
    lines = markdown_table(["model", *(f"median ‖∇ₓ {k}‖" for k in kinds), "deletion area"],
                           ([m, *(f"{norms.loc[m, k]:.3g}" for k in kinds), f"{area.get(m, float('nan')):.3f}"]
                            for m in models if m in norms.index))
    return ["Input gradients (smaller: flatter; deletion: accuracy as pixels are removed in order of |∇ₓ CE|, "
            "lower = the map finds the evidence):", "", *lines, ""]


def paper_scale_lines(folder: str | Path | None, pair: Pair = Pair()) -> list[str]:
    """"The headline at paper scale": the pair's FGSM transfer from both sources, white-box attacks, gradients and
    the zoo decision."""
    if not folder:
        return []
    result = read_results(folder)
    models = _models(result, pair)
    prov = result.provenance
    n = int(result.rows[result.rows.attack.eq("fgsm")].n.iloc[0])
    same = accuracy_row(result.rows, pair.source, pair.gradreg, "fgsm", HEADLINE_EPS)
    zoo = accuracy_row(result.rows, pair.zoo_source, pair.gradreg, "fgsm", HEADLINE_EPS)
    own = accuracy_row(result.rows, pair.source, pair.source, "fgsm", HEADLINE_EPS)
    ok, why = joins_zoo(result, pair)
    paper = PAPER_FGSM_FROM_NORMAL.get("gradreg", {}).get(HEADLINE_EPS)
    lines = [f"## The headline at paper scale ({n:,} test images, {prov.get('device', '?')}, "
             f"{prov['seconds']:,.0f} s)", "",
             f"The paper: Grad Reg (y) keeps {paper} of the normal model's FGSM at ε = {HEADLINE_EPS}, examples made on "
             "the same architecture. Ours, with 95% Wilson intervals:", "",
             *markdown_table(["", "FGSM from the same architecture", "from the zoo's normal model",
                              "the source on its own examples"],
                             [[f"{pair.gradreg} at ε = {HEADLINE_EPS}", f"**{_ci(same)}** ({pair.source})",
                               f"{_ci(zoo)} ({pair.zoo_source})", _ci(own)]]), "",
             f"**Zoo decision: {'joins the zoo' if ok else 'stays out of the zoo'}** — {why}.", "",
             "### FGSM transfer from each source", "",
             *_transfer_table(result, models, pair.source),
             *(_transfer_table(result, models, pair.zoo_source) if pair.zoo_source in models else []),
             *_whitebox_table(result, models), *_progress(prov), *_explanations(Path(folder), models)]
    return lines


def _progress(provenance: dict) -> list[str]:
    """A run written by `evaluate --finished-only` while it goes on: what is not computed yet."""
    missing = provenance.get("blocks_missing")
    if not missing:
        return []
    return [f"*In progress: not computed yet (– above): {'; '.join(missing)}.*", ""]
