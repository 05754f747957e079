"""Explanation quality measured over models × saliency methods × metrics, with bootstrap intervals.

Each (model, method, metric) cell's per-image scores are cached on disk under a key of everything they depend on,
so an interrupted run resumes where it stopped and a rerun with one more metric computes that metric alone.
Maps are computed once per model and method and shared by every metric that needs them.
"""
from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from gradviz import __version__
from gradviz.attribution.methods import DEFAULT_METHODS, SaliencyMethod, get_method
from gradviz.attribution.methods import REGISTRY as METHODS
from gradviz.attribution.metrics import REGISTRY as METRICS
from gradviz.attribution.metrics import Evidence, Metric, get_metric, ink_mask
from gradviz.data.datasets import dataset_source, evidence_regions, has_masks, load_dataset, load_masks
from gradviz.data.ground_truth import DECOYS, EVIDENCE_INSIDE_MASK, MASK_MEANING
from gradviz.evaluation.runs.matrix import correct_counts, default_models
from gradviz.evaluation.runs.shortcuts import shortcut_share
from gradviz.evaluation.runs.stats import bootstrap_intervals
from gradviz.machine import run_stamp
from gradviz.nets.architecture import channels_last, class_count, frozen
from gradviz.nets.cards import require_dataset
from gradviz.nets.store import atomic_write, load_model, read_cached_json
from gradviz.paths import result_folders_holding
from gradviz.progress import progress_bar

SCORE_COLUMNS = ["model", "method", "metric", "image", "score"]
SUMMARY_COLUMNS = ["model", "method", "metric", "category", "higher_is_better", "mean", "ci_low", "ci_high",
                   "n", "undefined", "clean_accuracy"]
Progress = Callable[[int, int, str], None]


@dataclass
class InterpretConfig:
    """One run; every field is part of the provenance."""

    dataset: str = "mnist"
    models: list[str] = field(default_factory=list)  # empty: every zoo model of the dataset
    methods: list[str] = field(default_factory=lambda: list(DEFAULT_METHODS))
    metrics: list[str] = field(default_factory=lambda: list(METRICS))
    n: int = 1000
    seed: int = 0
    device: str = field(default_factory=lambda: "cuda" if torch.cuda.is_available() else "cpu")
    batch_size: int = 250  # on CPU, 250-image batches stay in cache (a gradient of 1,000 digits: 0.76 s vs 0.94 s)
    ink_threshold: float = 0.25  # the object mask of the localisation metrics: pixels brighter than this
    method_params: dict[str, dict] = field(default_factory=dict)
    metric_params: dict[str, dict] = field(default_factory=dict)
    data_dir: str | None = None

    def check(self) -> None:
        """Every name and setting known and in range, before any work starts."""
        for name in self.methods:
            get_method(name).settings(self.method_params.get(name))
        for name in self.metrics:
            get_metric(name).settings(self.metric_params.get(name))
        for what, given, known in (("method", self.method_params, self.methods),
                                   ("metric", self.metric_params, self.metrics)):
            stray = sorted(set(given) - set(known))
            if stray:
                raise ValueError(f"settings given for {what} {', '.join(stray)}, which this run does not use")
        if not self.methods or not self.metrics:
            raise ValueError("choose at least one saliency method and one metric")
        if not 0 < self.n:
            raise ValueError(f"n must be positive; got {self.n}")


@dataclass
class InterpretResult:
    scores: pd.DataFrame  # one row per (model, method, metric, image)
    summary: pd.DataFrame  # one row per (model, method, metric), with a 95% bootstrap interval
    provenance: dict


def explainer(method: SaliencyMethod, settings: dict, seed: int):
    """The `(model, x, y, cls) -> maps` a metric calls to explain perturbed images or damaged models."""
    def explain(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
        return method.attribute(model, x, y, cls, seed, **settings)

    return explain


def _cell_key(config: InterpretConfig, card: dict, method: str, metric: str) -> str:
    payload = {"model": card["sha256"], "method": method, "method_settings": get_method(method).settings(
        config.method_params.get(method)), "metric": metric,
        "metric_settings": get_metric(metric).settings(config.metric_params.get(metric)), "n": config.n,
        "seed": config.seed, "batch_size": config.batch_size, "ink": config.ink_threshold,
        "dataset": config.dataset, "data": dataset_source(config.dataset, config.data_dir), "version": __version__}
    if has_masks(config.dataset):
        payload["target"] = "ground truth"
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


def _cached_scores(path: Path | None, n: int) -> np.ndarray | None:
    """A cached cell's scores, or None to compute it: absent, or damaged (reported, removed, recomputed)."""
    def valid(values: object) -> bool:
        return isinstance(values, list) and len(values) == n and all(
            v is None or (isinstance(v, int | float) and not isinstance(v, bool)) for v in values)

    values = read_cached_json(path, valid)
    return None if values is None else np.array([np.nan if v is None else float(v) for v in values])


def evidence_batches(model: nn.Module, x: torch.Tensor, y: torch.Tensor, method: SaliencyMethod, settings: dict,
                     config: InterpretConfig, regions: torch.Tensor | None = None) -> list[Evidence]:
    """The images in batches, each with its signed maps of the true class; kept for every metric of one model
    and method, so maps (and the robustness metrics' noisy maps) are made once. The localisation metrics'
    target is the dataset's ground truth (`regions`, [N, H, W]) where it has one, else the digit's ink."""
    out = []
    for start in range(0, len(x), config.batch_size):
        part = slice(start, start + config.batch_size)
        seed = config.seed + start
        maps = method.attribute(model, x[part], y[part], None, seed, **settings)
        out.append(Evidence(model, x[part], y[part], maps, explainer(method, settings, seed),
                            ink_mask(x[part], config.ink_threshold) if regions is None else regions[part], seed,
                            class_count(model, x[part])))
    return out


def score_cell(batches: list[Evidence], metric: Metric, settings: dict) -> np.ndarray:
    """One metric's per-image scores over every batch."""
    return np.concatenate([metric(evidence, **settings) for evidence in batches])


def _frozen(model: nn.Module, device: str) -> nn.Module:
    return frozen(channels_last(model) if device == "cpu" else model)


def interpret(config: InterpretConfig, cache_dir: str | Path | None = None, progress: bool = True,
              on_progress: Progress | None = None) -> InterpretResult:
    """Score every model × method × metric on the first n test images; cached cells are reused."""
    started = time.perf_counter()
    config.check()
    names = config.models or default_models(config.dataset)
    if not names:
        raise ValueError(f"no models to interpret for {config.dataset}")
    loaded = {n: load_model(n, config.device) for n in names}
    cards = {n: c for n, (_, c) in loaded.items()}
    require_dataset(cards, config.dataset)
    models = {n: _frozen(m, config.device) for n, (m, _) in loaded.items()}
    x, y = load_dataset(config.dataset, "test", config.data_dir)
    if config.n > len(x):
        raise ValueError(f"n = {config.n} is more than the {len(x)} test images of {config.dataset}")
    x, y = x[:config.n].to(config.device), y[:config.n].to(config.device)
    regions = evidence_regions(config.dataset, "test", config.data_dir)
    regions = None if regions is None else regions[:config.n].to(config.device)
    cache = Path(cache_dir) if cache_dir else None
    cells = [(m, s, k) for m in names for s in config.methods for k in config.metrics]
    bar = progress_bar(len(cells), 0, "interpret", progress, unit="cell")
    frames, reused, done, seconds = [], 0, 0, {}
    for name in names:
        for method_name in config.methods:
            method = get_method(method_name)
            method_settings = method.settings(config.method_params.get(method_name))
            batches = None
            for metric_name in config.metrics:
                bar.set_postfix_str(f"{name} {method_name} {metric_name}")
                metric = get_metric(metric_name)
                path = cache / f"{_cell_key(config, cards[name], method_name, metric_name)}.json" if cache else None
                scores = _cached_scores(path, config.n)
                if scores is None:
                    if batches is None:
                        tick = time.perf_counter()
                        batches = evidence_batches(models[name], x, y, method, method_settings, config, regions)
                        seconds["maps"] = seconds.get("maps", 0.0) + time.perf_counter() - tick
                    tick = time.perf_counter()
                    scores = score_cell(batches, metric, metric.settings(config.metric_params.get(metric_name)))
                    seconds[metric_name] = seconds.get(metric_name, 0.0) + time.perf_counter() - tick
                    if path is not None:
                        path.parent.mkdir(parents=True, exist_ok=True)
                        payload = json.dumps([None if np.isnan(v) else float(v) for v in scores])
                        atomic_write(path, lambda p, payload=payload: p.write_text(payload))
                else:
                    reused += 1
                frames.append(pd.DataFrame({"model": name, "method": method_name, "metric": metric_name,
                                            "image": np.arange(config.n), "score": scores}))
                done += 1
                bar.update()
                if on_progress is not None:
                    on_progress(done, len(cells), f"{name} · {method_name} · {metric_name}")
    bar.close()
    scores = pd.concat(frames, ignore_index=True)
    clean = {n: correct_counts(m, x, y, config.batch_size) / config.n for n, m in models.items()}
    provenance = _provenance(config, cards, time.perf_counter() - started, reused, len(cells), seconds)
    if config.dataset in DECOYS:  # how often each model reads the swatch instead of the object
        masks = load_masks(config.dataset, "test", config.data_dir)[:config.n].to(config.device)
        provenance["follows_swatch"] = {n: shortcut_share(m, x, y, masks) for n, m in models.items()}
    return InterpretResult(scores, summarise(scores, clean, config.seed), provenance)


def summarise(scores: pd.DataFrame, clean: dict[str, float], seed: int = 0) -> pd.DataFrame:
    """Mean and 95% bootstrap interval per (model, method, metric); `undefined` counts images with no score."""
    cells = [(key, block["score"].to_numpy(dtype=np.float64))
             for key, block in scores.groupby(["model", "method", "metric"], sort=False)]
    rows = []
    for ((model, method, metric), values), (low, high) in zip(
            cells, bootstrap_intervals([v for _, v in cells], seed=seed)):
        defined = values[~np.isnan(values)]
        entry = METRICS.get(metric)
        rows.append({"model": model, "method": method, "metric": metric,
                     "category": entry.category if entry else "", "higher_is_better": bool(entry and
                                                                                        entry.higher_is_better),
                     "mean": float(defined.mean()) if len(defined) else np.nan, "ci_low": low, "ci_high": high,
                     "n": len(defined), "undefined": int(len(values) - len(defined)),
                     "clean_accuracy": clean.get(model, np.nan)})
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def extremes(scores: pd.DataFrame, model: str, method: str, metric: str,
             k: int = 6) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The k best- and k worst-scored images of one cell, best first and worst first, whichever way the metric
    points; images without a score are left out."""
    cell = scores[(scores.model == model) & (scores.method == method) & (scores.metric == metric)]
    cell = cell.dropna(subset=["score"])
    higher = METRICS[metric].higher_is_better if metric in METRICS else True
    ranked = cell.sort_values(["score", "image"], ascending=[not higher, True])
    return ranked.head(k), ranked.tail(k).iloc[::-1]


def localisation_target(config: InterpretConfig) -> str:
    """What the localisation metrics score attribution against, in words."""
    if not has_masks(config.dataset):
        return f"the digit's ink (pixels above {config.ink_threshold:g})"
    part, _ = MASK_MEANING[config.dataset]
    return f"ground truth: {'the ' + part if EVIDENCE_INSIDE_MASK[config.dataset] else 'everything but the ' + part}"


def _provenance(config: InterpretConfig, cards: dict, seconds: float, reused: int, cells: int,
                per_metric: dict[str, float]) -> dict:
    return {
        "config": asdict(config),
        "models": {n: {"sha256": c["sha256"], "defense": c["defense"], "lam": c.get("lam"), "eps": c.get("eps")}
                   for n, c in cards.items()},
        "methods": {m: {"label": METHODS[m].label, "settings": METHODS[m].settings(config.method_params.get(m))}
                    for m in config.methods},
        "metrics": {m: {"label": METRICS[m].label, "category": METRICS[m].category,
                        "higher_is_better": METRICS[m].higher_is_better,
                        "settings": METRICS[m].settings(config.metric_params.get(m)), "quantus": METRICS[m].quantus}
                    for m in config.metrics},
        "data_source": dataset_source(config.dataset, config.data_dir), "images": "first n of the test split",
        "localisation_target": localisation_target(config),
        "seconds": round(seconds, 2), "seconds_per_metric": {k: round(v, 2) for k, v in per_metric.items()},
        "cached_cells_reused": f"{reused}/{cells}", **run_stamp(config.device, __version__),
    }


def write_interpretation(result: InterpretResult, out: str | Path) -> Path:
    """scores.csv.gz (per image, a gzipped tidy CSV), summary.csv and provenance.json into `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "scores.csv.gz", lambda p: result.scores.to_csv(p, index=False, compression="gzip",
                                                                              float_format="%.6g"))
    atomic_write(out / "summary.csv", lambda p: result.summary.to_csv(p, index=False))
    atomic_write(out / "provenance.json", lambda p: p.write_text(json.dumps(result.provenance, indent=2,
                                                                            default=str)))
    return out


def read_interpretation(folder: str | Path) -> InterpretResult:
    """A folder written by write_interpretation (for the Interpretability page and the report)."""
    folder = Path(folder)
    if not (folder / "summary.csv").is_file():
        raise FileNotFoundError(f"{folder} holds no summary.csv")
    scores_path = folder / "scores.csv.gz"
    scores = pd.read_csv(scores_path) if scores_path.is_file() else pd.DataFrame(columns=SCORE_COLUMNS)
    return InterpretResult(scores, pd.read_csv(folder / "summary.csv"),
                           json.loads((folder / "provenance.json").read_text()))


def interpretation_folders() -> dict[str, Path]:
    """Every folder holding an interpretation summary: the committed runs, then the user's."""
    return result_folders_holding("summary.csv")
