"""A self-contained HTML report of an evaluation run (plotly inlined once, opens offline)."""
from __future__ import annotations

import html
import json
from pathlib import Path

import pandas as pd

from gradviz.attacks.registry import attack_title
from gradviz.attribution.measures import deletion_curves, gradient_norms
from gradviz.data.datasets import load_dataset
from gradviz.evaluation import figures
from gradviz.evaluation.runs.matrix import EvalResult
from gradviz.nets.store import load_model

INTERPRETABILITY_IMAGES = 500


def interpretability_tables(result: EvalResult, n: int = INTERPRETABILITY_IMAGES) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Gradient norms and deletion curves of every evaluated model on the same test images."""
    config = result.provenance["config"]
    x, y = load_dataset(config["dataset"], "test", config.get("data_dir"))
    n = min(n, config["n"])
    x, y = x[:n].to(config["device"]), y[:n].to(config["device"])
    models = {name: load_model(name, config["device"])[0] for name in result.provenance["models"]}
    return gradient_norms(models, x, y), deletion_curves(models, x, y)


def read_gradient_summary(folder: Path) -> tuple[pd.DataFrame, pd.Series] | None:
    """What write_report left in `folder`: median input-gradient norm per model (rows) and kind (columns), and each
    model's deletion-curve area; None for a run written with --no-report."""
    if not ((folder / "norms.csv").is_file() and (folder / "deletion.csv").is_file()):
        return None
    norms = pd.read_csv(folder / "norms.csv").groupby(["model", "kind"]).norm.median().unstack()
    return norms, pd.read_csv(folder / "deletion.csv").groupby("model").auc.first()


def _table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, float_format=lambda v: f"{v:.3f}", border=0, classes="t")


def write_report(result: EvalResult, out: str | Path, heatmap_eps: float = 0.3) -> Path:
    """report.html (plus norms.csv and deletion.csv) into `out`."""
    out = Path(out)
    norms, deletion = interpretability_tables(result)
    norms.to_csv(out / "norms.csv", index=False)
    deletion.to_csv(out / "deletion.csv", index=False)
    rows, dataset = result.rows, result.provenance["config"]["dataset"]
    parts = []
    for attack in rows.attack.unique():
        parts += [f"<h2>{html.escape(attack_title(attack))}</h2>",
                  figures.accuracy_curves(rows, attack, paper_overlay=dataset == "mnist"),
                  figures.transfer_heatmap(rows, attack, heatmap_eps),
                  figures.whitebox_transfer_figure(rows, attack)]
    for attack, block in result.l0.groupby("attack", sort=False):
        parts += [f"<h2>{html.escape(attack_title(attack))} ({html.escape(str(block.budget.iloc[0]))})</h2>",
                  _table(block)]
    parts += ["<h2>Gradient masking</h2>", _table(result.masking),
              "<h2>Interpretability</h2>", figures.norm_boxplot(norms), figures.deletion_figure(deletion),
              _table(deletion.groupby("model", sort=False).auc.first().reset_index()),
              "<h2>Provenance</h2>", f"<pre>{html.escape(json.dumps(result.provenance, indent=2, default=str))}</pre>"]
    body, first = [], True
    for part in parts:
        if isinstance(part, str):
            body.append(part)
        else:
            body.append(part.to_html(full_html=False, include_plotlyjs="inline" if first else False))
            first = False
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>gradviz evaluation: {dataset}</title>"
            "<style>body{font-family:sans-serif;max-width:1200px;margin:auto}.t td,.t th{padding:2px 8px}</style>"
            f"</head><body><h1>gradviz evaluation: {dataset}</h1>{''.join(body)}</body></html>")
    path = out / "report.html"
    path.write_text(page)
    return path
