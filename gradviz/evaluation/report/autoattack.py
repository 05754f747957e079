"""Every white-box robustness number checked with AutoAttack and Square: the section of docs/REPRODUCTION.md that
says how far our single-step and 20-step attacks overstate each model's robustness.

Gradient-based defenses are the classic case of over-claimed robustness (Athalye et al. 2018; Croce & Hein 2020
re-evaluated dozens of them with AutoAttack). This reads an `evaluate` run holding AutoAttack, Square and the
gradient attacks on the same images, and renders one row per model and ε.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from gradviz.attacks.registry import REGISTRY, attack_title
from gradviz.evaluation.report.tables import markdown_table, row
from gradviz.evaluation.runs.matrix import EvalResult, read_results

GRADIENT_ATTACKS = ("fgsm", "pgd", "mifgsm")  # the attacks whose numbers AutoAttack checks
COLUMNS = (*GRADIENT_ATTACKS, "square", "autoattack")
OVERSTATED = 0.02  # about the 95% Wilson half-width at n = 1,000 near 0.9: a smaller gap is noise


def whitebox_accuracy(result: EvalResult) -> pd.DataFrame:
    """Rows (model, ε > 0), one column per attack of COLUMNS the run holds, plus `clean`, AutoAttack's interval
    (`aa_low`, `aa_high`) and `gap`: the strongest gradient attack's accuracy minus AutoAttack's."""
    rows = result.rows[result.rows.whitebox & result.rows.attack.isin(COLUMNS)]
    if "autoattack" not in set(rows.attack) and not result.provenance.get("blocks_missing"):
        raise ValueError("this evaluation holds no AutoAttack rows; run evaluate --attacks ...,autoattack")
    clean = rows[rows.eps == 0].groupby("source").accuracy.first()
    attacked = rows[rows.eps > 0]
    table = attacked.pivot_table(index=["source", "eps"], columns="attack", values="accuracy", sort=False)
    table = table.reindex(columns=[a for a in COLUMNS if a in table.columns or a == "autoattack"])
    aa = attacked[attacked.attack == "autoattack"].set_index(["source", "eps"])
    table["aa_low"], table["aa_high"] = aa.ci_low.reindex(table.index), aa.ci_high.reindex(table.index)
    table.insert(0, "clean", [clean.get(source) for source, _ in table.index])
    gradient = [a for a in GRADIENT_ATTACKS if a in table.columns]
    table["gap"] = table[gradient].min(axis=1) - table["autoattack"] if gradient else float("nan")
    return table


def _seconds(result: EvalResult, attack: str, model: str) -> str:
    if any(b.startswith(f"{model} {attack} ") for b in result.provenance.get("blocks_missing", [])):
        return "…"  # some of its blocks are still to come: a partial sum would read as the whole
    seconds = result.provenance.get("seconds_per_attack", {}).get(attack, {}).get(model)
    return "–" if seconds is None else f"{seconds:,.0f} s"


def _row(result: EvalResult, model: str, eps: float, values: pd.Series, first: bool) -> str:
    pending = "…" if result.provenance.get("blocks_missing") else "–"  # not computed yet / not asked for
    cells = [f"{values[a]:.3f}" if a in values and pd.notna(values[a]) else pending for a in COLUMNS[:-1]]
    aa = (f"**{values['autoattack']:.3f}** [{values['aa_low']:.3f}, {values['aa_high']:.3f}]"
          if pd.notna(values["autoattack"]) else pending)
    gap = f"{values['gap']:+.3f}" if pd.notna(values["gap"]) else pending
    clean = f" ({values['clean']:.3f} clean)" if pd.notna(values["clean"]) else ""
    label = f"{model}{clean}" if first else ""
    seconds = f"{_seconds(result, 'square', model)} / {_seconds(result, 'autoattack', model)}" if first else ""
    return row([label, f"{eps:g}", *cells, aa, gap, seconds])


def _findings(table: pd.DataFrame, masking: pd.DataFrame) -> list[str]:
    """One line per model whose gradient attacks overstate it, and the masking check's black-box flags."""
    lines = []
    for model, block in table.groupby(level=0, sort=False):
        gaps = block.gap.dropna()
        if len(gaps) and gaps.max() > OVERSTATED:
            worst = gaps.idxmax()
            lines.append(f"- **{model}**: our strongest gradient attack overstated its robustness by up to "
                         f"{gaps.max():.3f} (ε = {worst[1]:g}: {block.loc[worst, 'autoattack']:.3f} under "
                         f"AutoAttack).")
    if not lines and table.gap.notna().any():
        lines.append(f"- No model's robustness was overstated by more than {OVERSTATED} by the best of FGSM, PGD "
                     "and MI-FGSM.")
    if "black_box_whitebox" in masking:
        for _, m in masking[masking.reason.str.contains("black-box", na=False)].iterrows():
            lines.append(f"- Masking flag for **{m.model}**: {m.reason}.")
    return lines


def autoattack_section(result: EvalResult) -> list[str]:
    """Markdown lines: the table of one run and what it found."""
    table = whitebox_accuracy(result)
    prov = result.provenance
    n = int(result.rows[result.rows.attack.isin(COLUMNS)].n.max())
    dataset = prov["config"]["dataset"]
    queries = REGISTRY["square"].settings(prov["config"].get("attack_params", {}).get("square")).get("queries")
    titles = [attack_title(a) for a in COLUMNS]
    lines = [f"### {dataset}: first {n:,} test images ({prov.get('device', '?')}, {prov['seconds']:,.0f} s this "
             f"run, {prov.get('cached_blocks_reused', '?')} blocks reused)", "",
             f"White-box accuracy; AutoAttack with its 95% Wilson interval. *Gap*: the lowest of "
             f"{', '.join(attack_title(a) for a in GRADIENT_ATTACKS)} minus AutoAttack (how far our own attacks "
             f"overstate the model). Square: {queries} queries. Times: Square / AutoAttack, all ε together, as "
             "measured when each block was computed, on the machine that computed it (a reused block keeps its "
             "first machine's time).", "",
             *markdown_table(["model", "ε", *titles, "gap", "time"], [])]
    for model, block in table.groupby(level=0, sort=False):
        lines += [_row(result, model, eps, values, i == 0) for i, ((_, eps), values) in enumerate(block.iterrows())]
    return [*lines, "", *_progress(result, table), *_findings(table, result.masking), ""]


def _progress(result: EvalResult, table: pd.DataFrame) -> list[str]:
    """For a run still going on (`evaluate --finished-only`): how much is done and which models have nothing yet."""
    missing = result.provenance.get("blocks_missing")
    if not missing:
        return []
    blocks = int(str(result.provenance.get("cached_blocks_reused", "0/0")).split("/")[1])
    waiting = [m for m in result.provenance["models"] if m not in set(table.index.get_level_values(0))]
    return [f"*In progress: {blocks - len(missing)} of {blocks} blocks finished; … is not computed yet"
            + (f"; nothing yet for {', '.join(waiting)}" if waiting else "") + ".*", ""]


def autoattack_lines(folders: list[str | Path]) -> list[str]:
    """"Robustness checked with AutoAttack": one table per `evaluate` run that holds AutoAttack."""
    if not folders:
        return []
    lines = ["## Robustness checked with AutoAttack", "",
             "Single-step and 20-step attacks overstate the robustness of gradient-based defenses (Athalye et al. "
             "2018; Croce & Hein 2020, whose AutoAttack cut e.g. JARN, an input-gradient regularizer, from a "
             "reported 15.5% to 0.26%). AutoAttack (torchattacks' standard L∞ version: APGD-CE, APGD-T, FAB-T, "
             "Square) is the reference white-box number; Square alone, which reads only the model's outputs, checks "
             "that a model does not merely hide its gradients: where it does better than every gradient attack, the "
             "masking check flags the model.", ""]
    for folder in folders:
        lines += autoattack_section(read_results(folder))
    return lines
