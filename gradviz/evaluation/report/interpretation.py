"""A self-contained HTML report of an interpretation run (plotly inlined once, opens offline)."""
from __future__ import annotations

import html
import json
from pathlib import Path

from gradviz.attribution.metrics import REGISTRY as METRICS
from gradviz.evaluation.figures.interpretation import category_radar, score_heatmap
from gradviz.evaluation.runs.interpretation import InterpretResult
from gradviz.nets.store import atomic_write


def _metric_notes(names: list[str]) -> str:
    items = "".join(f"<li><b>{html.escape(m)}</b> ({html.escape(METRICS[m].category)}, "
                    f"{'higher' if METRICS[m].higher_is_better else 'lower'} is better): "
                    f"{html.escape(METRICS[m].help)}</li>" for m in names if m in METRICS)
    return f"<ul>{items}</ul>"


def write_interpretation_report(result: InterpretResult, out: str | Path) -> Path:
    """report.html into `out`: the heatmap, a radar per method, the summary table, the metrics and provenance."""
    out = Path(out)
    summary, dataset = result.summary, result.provenance["config"]["dataset"]
    figures = [score_heatmap(summary)] + [category_radar(summary, m) for m in dict.fromkeys(summary["method"])]
    parts = [fig.to_html(full_html=False, include_plotlyjs="inline" if i == 0 else False)
             for i, fig in enumerate(figures)]
    table = summary.to_html(index=False, float_format=lambda v: f"{v:.3f}", border=0, classes="t")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>gradviz interpretation: "
            f"{html.escape(dataset)}</title><style>body{{font-family:sans-serif;max-width:1300px;margin:auto}}"
            f".t td,.t th{{padding:2px 8px}}</style></head><body><h1>gradviz interpretation: {html.escape(dataset)}"
            f"</h1><p>Mean per image with a 95% bootstrap interval, first {result.provenance['config']['n']} test "
            f"images.</p>{''.join(parts)}<h2>Summary</h2>{table}<h2>Metrics</h2>"
            f"{_metric_notes(list(dict.fromkeys(summary['metric'])))}<h2>Provenance</h2>"
            f"<pre>{html.escape(json.dumps(result.provenance, indent=2, default=str))}</pre></body></html>")
    path = out / "report.html"
    atomic_write(path, lambda p: p.write_text(page))
    return path
