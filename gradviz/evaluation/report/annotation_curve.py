"""The section "How many annotations does it take?": an annotation curve's curve.json as Markdown tables."""
from __future__ import annotations

import json
import math
from pathlib import Path

from gradviz.evaluation.report.tables import markdown_table

CURVE_FILE = "curve.json"
FIGURE_FILE = "curve.svg"
COLUMNS = {"shortcut_free_accuracy": "Accuracy without the shortcut (test set, no swatch)",
           "wrong_region_share": "Share of |∇ log p| on the swatch",
           "follows_shortcut": "Predictions that follow the swatch where it codes another class"}
TITLES = {"normal": "plain cross-entropy", "gradreg": "Grad Reg (y)",
          "rrr": "RRR (Ross et al. 2017)", "rrr-g": "RRR-G (Grad-CAM; Schramowski et al. 2020)",
          "counterexamples": "counterexamples (Teso & Kersting 2019)"}


def read_curve(folder: str | Path) -> dict:
    return json.loads((Path(folder) / CURVE_FILE).read_text())


def _cell(entry: dict | None, metric: str) -> str:
    if entry is None:
        return "–"
    low, high = entry[f"{metric}_interval"]
    interval = "" if math.isnan(low) else f" [{low:.3f}, {high:.3f}]"
    return f"{entry[metric]:.3f}{interval}"


def metric_table(record: dict, metric: str) -> list[str]:
    """Rows: the start model, each baseline (in the "none" column), each penalty (one column per count)."""
    counts = record["counts"]
    by_key = {(e["curve"], e["annotated"]): e for e in record["summary"]}
    start = record.get("start_metrics", {})
    blank = ["–"] * len(counts)
    rows = [[f"{record['start']} (start)", f"{start[metric]:.3f}" if metric in start else "–", *blank]]
    rows += [[TITLES.get(name, name), _cell(by_key.get((name, "0")), metric), *blank] for name in record["baselines"]]
    rows += [[TITLES.get(name, name), "–", *[_cell(by_key.get((name, c)), metric) for c in counts]]
             for name in record["penalties"]]
    return markdown_table(["", "no annotations", *[f"N = {c}" for c in counts]], rows)


def _baseline(record: dict, name: str) -> dict | None:
    """A baseline's summary entry (it has one: no annotation count)."""
    return next((e for e in record["summary"] if e["curve"] == name), None)


def fewest_that_beat(record: dict, penalty: str, baseline: str = "normal",
                     metric: str = "shortcut_free_accuracy") -> dict | None:
    """The penalty's entry with the fewest annotated images whose interval lies wholly above the baseline's (None:
    no count does)."""
    base = _baseline(record, baseline)
    if base is None:
        return None
    bar = base[f"{metric}_interval"][1] if not math.isnan(base[f"{metric}_interval"][1]) else base[metric]
    entries = sorted((e for e in record["summary"] if e["curve"] == penalty), key=lambda e: e["images"])
    return next((e for e in entries if e[f"{metric}_interval"][0] > bar), None)


def curve_answer(record: dict) -> str:
    """One sentence per penalty: from how many annotated images it beats plain cross-entropy without the shortcut."""
    base = _baseline(record, "normal")
    if base is None:
        return ""
    parts = []
    for penalty in record["penalties"]:
        name = TITLES.get(penalty, penalty).split(" (")[0]
        best = fewest_that_beat(record, penalty)
        if best is None:
            most = max((e for e in record["summary"] if e["curve"] == penalty), key=lambda e: e["images"], default=None)
            reach = f" (at {most['images']:,}: {most['shortcut_free_accuracy']:.3f})" if most else ""
            parts.append(f"{name} never clearly beats it{reach}")
        else:
            parts.append(f"{name} beats it from {best['images']:,} annotated images on "
                         f"({best['shortcut_free_accuracy']:.3f})")
    return (f"On {record['dataset']} without the shortcut, plain cross-entropy fine-tuning reaches "
            f"{base['shortcut_free_accuracy']:.3f}; " + "; ".join(parts) + " (intervals apart, 95% over seeds).")


def summary_text(record: dict) -> str:
    """Every metric's table, each headed by what it measures."""
    lines = []
    for metric, title in COLUMNS.items():
        lines += [f"**{title}** (mean over seeds [95% t-interval])", "", *metric_table(record, metric), ""]
    return "\n".join(lines)


def annotation_curve_lines(folders: list[str | Path]) -> list[str]:
    """The report's section, one subsection per dataset (empty without folders)."""
    if not folders:
        return []
    lines = ["## How many annotations does it take?", "",
             "Each run fine-tunes the shortcut-trained model as the Annotate page does; the penalty acts on N "
             "training images annotated from the generator's masks (the first N of a seeded permutation, nested "
             "per seed), plain cross-entropy on the rest; the baselines train as long with no annotations. Scored "
             "on the whole test set. Intervals: Student t over the seeds (3 seeds: wide on purpose).", ""]
    for folder in folders:
        record = read_curve(folder)
        settings = record["settings"]
        lams = ", ".join(f"{TITLES.get(k, k).split(' (')[0]} λ = {v:g}" for k, v in
                         {**record["penalties"], **record["baselines"]}.items() if v)
        lines += [f"### {record['dataset']} ({record['finished']}/{record['runs']} runs, "
                  f"{settings.get('steps')} steps of {settings.get('batch_size')} images each, seeds "
                  f"{', '.join(map(str, record['seeds']))}; {lams}; {record['seconds'] / 60:.0f} min of training "
                  "summed over runs, on "
                  f"{' / '.join(record['devices'])})", ""]
        if (Path(folder) / FIGURE_FILE).is_file():
            lines += [f"![Accuracy without the shortcut against annotated images, {record['dataset']}]"
                      f"({Path('results') / Path(folder).name / FIGURE_FILE})", ""]
        lines += [curve_answer(record), "", summary_text(record)]
    return lines
