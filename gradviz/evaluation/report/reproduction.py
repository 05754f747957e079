"""docs/REPRODUCTION.md from evaluation result folders: our numbers beside the paper's, and a verdict per claim.

Rendering only: the numbers and verdicts come from gradviz.evaluation.report.claims.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from gradviz.attacks.registry import REGISTRY, attack_title
from gradviz.evaluation.report.annotation_curve import annotation_curve_lines
from gradviz.evaluation.report.autoattack import autoattack_lines
from gradviz.evaluation.report.claims import (
    ORDER,
    THRESHOLDS,
    Facts,
    Target,
    Verdict,
    accuracy_row,
    by_defense,
    facts_of,
    fashion_targets,
    fmt,
    from_normal,
    mean_transfer,
    mnist_targets,
    transfer_attacks,
    transfer_verdicts,
    verdicts,
)
from gradviz.evaluation.report.ground_truth_claims import ground_truth_section
from gradviz.evaluation.report.html import INTERPRETABILITY_IMAGES, read_gradient_summary
from gradviz.evaluation.report.interpretation_claims import interpretation_section
from gradviz.evaluation.report.paper_scale import paper_scale_lines
from gradviz.evaluation.report.tables import markdown_table, row
from gradviz.evaluation.runs.interpretation import read_interpretation
from gradviz.evaluation.runs.matrix import EvalResult, read_results
from gradviz.evaluation.runs.paper import PAPER_CLEAN, PAPER_FGSM_FROM_NORMAL, PAPER_MEAN_TRANSFER, PAPER_WHITEBOX


def _cell(row: pd.Series | None, paper: float | None = None) -> str:
    if row is None:
        return "–"
    ours = f"{row.accuracy:.3f} [{row.ci_low:.3f}, {row.ci_high:.3f}]"
    return f"{ours} ({paper:.3f})" if paper is not None else ours


def _section(facts: Facts, with_paper: bool) -> list[str]:
    rows, names, defenses, eps_list = facts.rows, facts.names, facts.defenses, facts.eps
    out = []

    def pp(table: dict, d: str, e: float) -> float | None:
        return table.get(d, {}).get(e) if with_paper else None

    out += ["### Clean accuracy (first n test images)", "", *markdown_table(["model", "ours", "paper"], (
        [names[d], _cell(accuracy_row(rows, names[d], names[d], rows.attack.iloc[0], 0.0)),
         PAPER_CLEAN.get(d, "–") if with_paper else "–"] for d in defenses))]
    if "normal" in names and "fgsm" in set(rows.attack):
        out += ["", "### FGSM examples made on the normal model (ours [95% CI] (paper))", "",
                *markdown_table(["evaluated on \\ ε", *(f"{e:g}" for e in eps_list)], (
                    [names[d], *(_cell(accuracy_row(rows, names["normal"], names[d], "fgsm", e),
                                       pp(PAPER_FGSM_FROM_NORMAL, d, e)) for e in eps_list)] for d in defenses))]
    out += ["", "### White-box accuracy (ours [95% CI] (paper, FGSM only))", "",
            *markdown_table(["model", "attack", *(f"ε={e:g}" for e in eps_list)], (
                [names[d], attack, *(_cell(accuracy_row(rows, names[d], names[d], attack, e),
                                           pp(PAPER_WHITEBOX.get(attack, {}), d, e)) for e in eps_list)]
                for d in defenses for attack in rows.attack.unique()))]
    if facts.transfer:
        out += ["", "### Mean FGSM transfer accuracy from the other non-distilled sources (ours (paper))", "",
                *markdown_table(["model", *(f"ε={e:g}" for e in eps_list)], (
                    [names[d], *(f"{values[e]:.3f}" + (f" ({pp(PAPER_MEAN_TRANSFER, d, e):.3f})"
                                                       if pp(PAPER_MEAN_TRANSFER, d, e) else "") for e in eps_list)]
                    for d, values in facts.transfer.items()))]
    if facts.masked:
        out += ["", "### Gradient-masking check", "", *markdown_table(["model", "flagged", "reason"], [])]
    return out


def _masking_rows(result: EvalResult) -> list[str]:
    return [row([m.model, "**yes**" if m.flagged else "no", m.reason]) for _, m in result.masking.iterrows()]


def _verdict_lines(found: list[Verdict]) -> list[str]:
    return [f"(A model beats another when its accuracy is higher by more than {THRESHOLDS.margin:.2f}; "
            f"accuracies at or below {THRESHOLDS.chance:.2f} count as chance.)", "",
            *[f"- **{v.claim}: {v.verdict}** ({v.detail}" for v in found]]


def _target_lines(targets: list[Target]) -> list[str]:
    return markdown_table(["target", "measured", "met"], (
        [t.label, t.measured, "–" if t.met is None else "yes" if t.met else "**no**"] for t in targets))


def _interpretability(folder: Path, names: dict[str, str], masked: set[str]) -> list[str]:
    """Median input-gradient norms and deletion-curve areas (claim 3, which the paper shows only as pictures)."""
    summary = read_gradient_summary(folder)
    if summary is None:
        return []
    norms, area = summary
    out = ["### Interpretability: input-gradient norms and deletion curves", "",
           f"On the first {INTERPRETABILITY_IMAGES} test images. The deletion score is the mean accuracy while "
           "the 0–30% most salient pixels of each image (by the model's own |∇ₓ CE|) are set to 0: lower means "
           "the map points at pixels the model really uses. A model whose gradients vanish has no ranking of "
           "pixels, so its score is not meaningful (marked †).", "",
           *markdown_table(
               ["model", "median ‖∇ₓ log p(true)‖", "median ‖∇ₓ log p(target)‖", "median ‖∇ₓ Σ log p‖",
                "deletion score"],
               ([n, f"{norms.loc[n, 'log p(true)']:.2g}", f"{norms.loc[n, 'log p(target)']:.3g}",
                 f"{norms.loc[n, 'Σ log p']:.3g}", f"{area[n]:.3f}{' †' if n in masked else ''}"]
                for n in [names[d] for d in ORDER if d in names] if n in norms.index and n in area.index))]
    if {"gradreg", "normal"} <= names.keys() and {names["gradreg"], names["normal"]} <= set(area.index):
        g, b = area[names["gradreg"]], area[names["normal"]]
        out += ["", f"**Claim 3 (more faithful saliency), measured by deletion: "
                    f"{'held' if g < b - THRESHOLDS.margin else 'did not hold'}** (gradreg {g:.3f}, normal {b:.3f}; "
                    "the paper's evidence is visual only)."]
    return out


def l0_tables(result: EvalResult) -> list[str]:
    """Each pixel-budget attack (JSMA: θ = 1, γ = 0.25, target (y+1) mod 10) made on each model: how often each
    model is then fooled, and how many pixels the attack changed. The paper showed JSMA as images only."""
    out = []
    for attack, block in result.l0.groupby("attack", sort=False):
        success = block.pivot_table(index="source", columns="target", values="success_rate", sort=False)
        pixels = block.groupby("source", sort=False).mean_pixels_changed.first()
        names = list(success.columns)
        fooled = "classifies as the target" if REGISTRY.get(attack) is None or REGISTRY[attack].targeted \
            else "misclassifies"
        out += [f"### {attack_title(attack)} ({block.budget.iloc[0]}, first {int(block.n.iloc[0])} test images)", "",
                f"Share of images each model (columns) {fooled}, for {attack_title(attack)} made on the row's model; "
                "the diagonal is white-box. A model that needs more changed pixels is harder to push towards a "
                "target.", "",
                *markdown_table(["made on", "pixels changed (mean)", *names], (
                    [source, f"{pixels[source]:.1f}", *(f"**{success.loc[source, t]:.3f}**" if t == source
                                                        else f"{success.loc[source, t]:.3f}" for t in names)]
                    for source in success.index)), ""]
    return out


def _same_models(main: EvalResult, extra: EvalResult) -> None:
    ours, theirs = main.provenance["models"], extra.provenance["models"]
    differ = sorted(n for n in theirs if n in ours and ours[n]["sha256"] != theirs[n]["sha256"])
    if differ:
        raise ValueError(f"the extra results evaluated other weights of {', '.join(differ)}; rerun them")


def beyond_the_paper(main: EvalResult, extra: EvalResult) -> list[str]:
    """Stronger untargeted transfer attacks (MI-FGSM) beside FGSM on the same models and images, with a verdict:
    does Grad Reg (y)'s transfer advantage over normal and adversarial training survive them?"""
    _same_models(main, extra)
    rows = pd.concat([main.rows, extra.rows], ignore_index=True)
    facts = Facts(by_defense(main), rows)
    names, defenses = facts.names, facts.defenses
    out = []
    for attack in transfer_attacks(extra):
        title, n = attack_title(attack), int(extra.rows[extra.rows["attack"].eq(attack)].n.iloc[0])
        settings = REGISTRY[attack].settings(extra.provenance["config"].get("attack_params", {}).get(attack))
        eps_list = sorted(e for e in extra.rows[extra.rows["attack"].eq(attack)].eps.unique() if e > 0)
        out += [f"### {title} transfer (beyond the paper; {', '.join(f'{k} {v:g}' for k, v in settings.items())}, "
                f"first {n:,} test images, {extra.provenance['device']}, {extra.provenance['seconds']:.0f} s)", "",
                f"{REGISTRY[attack].reference}. The paper's transfer claim rests on single-step FGSM; {title} is the "
                "standard stronger transfer attack. Cells: "
                f"{title} accuracy [95% CI] / FGSM accuracy on the same images.", "",
                f"#### Examples made on {names.get('normal', 'the normal model')}", "",
                *markdown_table(["evaluated on \\ ε", *(f"{e:g}" for e in eps_list)], (
                    [names[d], *(f"{_cell(accuracy_row(rows, names['normal'], names[d], attack, e))} / "
                                 f"{fmt(from_normal(facts, d, e))}" for e in eps_list)]
                    for d in (defenses if "normal" in names else [])))]
        means = {d: {e: mean_transfer(rows, names, d, attack, e) for e in eps_list} for d in defenses
                 if d != "distilled"}
        fgsm_means = {d: {e: mean_transfer(rows, names, d, "fgsm", e) for e in eps_list} for d in means}
        out += ["", "#### Mean transfer accuracy from the other non-distilled sources", "",
                *markdown_table(["model", *(f"ε={e:g}" for e in eps_list)], (
                    [names[d], *(f"{values[e]:.3f} / {fgsm_means[d][e]:.3f}" for e in eps_list)]
                    for d, values in means.items()))]
        out += ["", *[f"- **{v.claim}: {v.verdict}** ({v.detail}" for v in transfer_verdicts(title, means, fgsm_means,
                                                                                           names)], ""]
    return out


def interpretation_lines(folders: list[str | Path]) -> list[str]:
    """"Interpretability, measured": per interpretation run, its dataset's gradreg against normal and advtrain."""
    if not folders:
        return []
    lines = ["## Interpretability, measured", "",
             "Does gradient regularization make the input gradient a better explanation? Each metric is scored per "
             "image on the same test images; the difference to the other model is paired by image, oriented so that "
             "positive means the regularized model is better, with a 95% bootstrap interval. A verdict *supports* "
             "or *contradicts* the claim only when the interval excludes 0. Maps are divided by their own largest "
             "value first, so small gradients alone earn nothing. The deletion score of the section above is "
             "the accuracy over the first 30% of pixels removed by |∇ₓ CE|; `deletion` here is the area under "
             "p(true class) over the whole curve, by each method's own map, so the two can disagree.", ""]
    for folder in folders:
        result = read_interpretation(folder)
        dataset = result.provenance["config"]["dataset"]
        lines += [f"### {dataset}", "", *interpretation_section(result, f"{dataset}-gradreg",
                                                               [f"{dataset}-normal", f"{dataset}-advtrain"])]
    return lines


def ground_truth_lines(folders: list[str | Path]) -> list[str]:
    """"Ground truth": per `interpret` run on Decoy or Block MNIST, where each model's maps lie against the masks."""
    if not folders:
        return []
    lines = ["## Ground truth", "",
             "Decoy MNIST and Block MNIST (gradviz.data.ground_truth) know where a model should look. Does Grad Reg "
             "(y), told nothing about the swatch or the blocks, move attribution off Decoy MNIST's swatch and onto "
             "Block MNIST's signal block, and how far compared with RRR (which is told where the swatch is) and "
             "adversarial training? Differences are paired by image with 95% bootstrap intervals; a verdict is "
             "*supports* or *contradicts* only when the interval excludes 0.", ""]
    for folder in folders:
        lines += ground_truth_section(read_interpretation(folder))
    return lines


def write_reproduction(mnist: str | Path, fashion: str | Path | None, out: str | Path, preamble: str = "",
                       mnist_beyond: list[str | Path] | None = None,
                       interpretation: list[str | Path] | None = None,
                       ground_truth: list[str | Path] | None = None,
                       autoattack: list[str | Path] | None = None,
                       paper_scale: str | Path | None = None,
                       annotation_curves: list[str | Path] | None = None) -> Path:
    """Write the report; `preamble` is prose (setup, differences) placed before the generated tables;
    `mnist_beyond`: result folders of attacks beyond the paper on the same MNIST models and images;
    `interpretation`: folders of `interpret` runs (the section "Interpretability, measured");
    `ground_truth`: `interpret` runs on Decoy / Block MNIST (the section "Ground truth");
    `autoattack`: `evaluate` runs holding AutoAttack (the section "Robustness checked with AutoAttack");
    `paper_scale`: the `evaluate` run of the paper-scale pair (the section "The headline at paper scale");
    `annotation_curves`: folders of `zoo curve --write` (the section "How many annotations does it take?")."""
    result = read_results(mnist)
    prov = result.provenance
    lines = ["# Reproduction of Ross & Doshi-Velez (AAAI 2018)", "",
             "Generated by `python -m gradviz reproduce` from committed evaluation results "
             "(`docs/results/`). Accuracies carry 95% Wilson intervals; paper values in parentheses are on "
             "256 images (±3 points standard error).", "", preamble, "",
             f"## MNIST ({prov['config']['n']} test images, {prov['device']}, {prov['seconds']:.0f} s)", ""]
    facts = facts_of(result)
    lines += ["### Targets", "", *_target_lines(mnist_targets(facts)), "",
              "### Which claims held", "", *_verdict_lines(verdicts(facts, result)), "",
              *_section(facts, with_paper=True), *_masking_rows(result), "",
              *l0_tables(result), *_interpretability(Path(mnist), facts.names, facts.masked_models()), ""]
    lines += paper_scale_lines(paper_scale)
    if mnist_beyond:
        lines += ["## MNIST beyond the paper", ""]
    for folder in mnist_beyond or []:
        lines += beyond_the_paper(result, read_results(folder))
    if fashion:
        fr = read_results(fashion)
        ffacts = facts_of(fr)
        lines += [f"## Fashion-MNIST ({fr.provenance['config']['n']} test images, {fr.provenance['device']}, "
                  f"{fr.provenance['seconds']:.0f} s; stand-in for notMNIST, no paper column)", "",
                  "### Targets", "", *_target_lines(fashion_targets(ffacts)), "",
                  "### Which claims held", "", *_verdict_lines(verdicts(ffacts, fr)), "",
                  *_section(ffacts, with_paper=False), *_masking_rows(fr), "",
                  *_interpretability(Path(fashion), ffacts.names, ffacts.masked_models()), ""]
    lines += autoattack_lines(autoattack or [])
    lines += interpretation_lines(interpretation or [])
    lines += ground_truth_lines(ground_truth or [])
    lines += annotation_curve_lines(annotation_curves or [])
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path
