"""How good an explanation is, measured: every metric gradviz knows as one registry entry, batched in torch.

Categories follow Quantus (Hedström et al., JMLR 2023): faithfulness, robustness, complexity, randomisation,
localisation. Each entry scores a whole batch and returns one number per image, so a summary can carry a
bootstrap interval and a page can show the best- and worst-scored images. Scale-sensitive metrics see maps
divided by their own largest |value| (gradient regularization shrinks gradients by design, and a metric
should not reward that alone). Where Quantus has the same metric, `quantus` names it and tests/attribution/test_metrics.py
checks that both give the same numbers; ours are batched torch, faster on our batches (benchmarks/metrics.py).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from gradviz.attribution.imputation import linear_imputation
from gradviz.attribution.randomisation import randomised_maps
from gradviz.attribution.similarity import similarity
from gradviz.params import Param, checked_settings

CATEGORIES = ("faithfulness", "robustness", "complexity", "randomisation", "localisation")
Explainer = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]  # model, x, y, cls → maps


@dataclass
class Evidence:
    """One batch to score: images [N, C, H, W], labels [N], the model's signed maps [N, H, W], how to make
    more maps (for perturbed images, damaged models, other classes) and where the object is (mask [N, H, W]).

    Maps of noisy copies of the images are kept, so the two robustness metrics share one set of draws (the
    re-explanations are most of their cost), and so are the maps of randomised models, so the two randomisation
    tests make their common step (the top layer alone) once."""

    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    maps: torch.Tensor
    explain: Explainer
    mask: torch.Tensor
    seed: int = 0
    num_classes: int = 10
    _noisy: dict = field(default_factory=dict, repr=False)
    _randomised: dict = field(default_factory=dict, repr=False)  # maps of damaged models, by their random layers

    def generator(self, purpose: str) -> torch.Generator:
        """A generator seeded by the batch's seed and what it is for: a metric's draws do not depend on which
        other metrics ran before it."""
        offset = int.from_bytes(purpose.encode()[:4].ljust(4, b"\0"), "little")
        return torch.Generator(device=self.x.device).manual_seed(self.seed * 1_000_003 + offset)

    def noisy_maps(self, samples: int, radius: float) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(δ, maps of x + δ) for `samples` draws of δ uniform in the L∞ ball of `radius`, made once."""
        key = (samples, radius)
        if key not in self._noisy:
            generator = self.generator("noise")
            draws = [(torch.rand(self.x.shape, generator=generator, device=self.x.device) * 2 - 1) * radius
                     for _ in range(samples)]
            self._noisy[key] = [(d, self.explain(self.model, self.x + d, self.y, self.y)) for d in draws]
        return self._noisy[key]


Score = Callable[..., np.ndarray]  # (evidence, **settings) -> one score per image


@dataclass(frozen=True)
class Metric:
    """One metric. `higher_is_better` says which way is good; `reexplains`: it asks for new maps (its cost is
    that of the saliency method times its samples); `quantus`: the Quantus metric it equals (tests check it)."""

    name: str
    label: str
    category: str
    higher_is_better: bool
    score: Score
    params: tuple[Param, ...] = ()
    reexplains: bool = False
    quantus: str = ""
    help: str = ""
    reference: str = ""  # where the metric comes from (attacks carry theirs too); every entry names one

    def __post_init__(self):
        if not self.reference:
            raise ValueError(f"metric {self.name}: name the paper it comes from (reference=…)")

    def settings(self, given: Mapping[str, float] | None = None) -> dict:
        return checked_settings(self.name, self.params, given)

    def __call__(self, evidence: Evidence, **params) -> np.ndarray:
        """Scores of the batch, one per image (NaN where the metric is undefined, e.g. an all-zero map)."""
        return np.asarray(self.score(evidence, **self.settings(params)), dtype=np.float64)


def unit_max(maps: torch.Tensor) -> torch.Tensor:
    """Each map divided by its largest |value| (an all-zero map stays zero)."""
    scale = maps.abs().flatten(1).amax(1).view(-1, *[1] * (maps.dim() - 1))
    return torch.where(scale > 0, maps / scale.clamp_min(torch.finfo(maps.dtype).tiny), maps)


def channel_index(index: torch.Tensor, channels: int, pixels: int) -> torch.Tensor:
    """Pixel indices [N, k] into an [H·W] map as indices into the flattened [C·H·W] image: every channel of each
    pixel, so a colour pixel is removed or inserted whole, as its one map value scores it."""
    return torch.cat([index + c * pixels for c in range(channels)], 1) if channels > 1 else index


def ink_mask(x: torch.Tensor, threshold: float = 0.25) -> torch.Tensor:
    """Where the object is when no annotation exists: pixels brighter than `threshold` (the digit's ink; a colour
    image by its channels' mean)."""
    return x.mean(1) > threshold


@torch.no_grad()
def class_probability(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.softmax(model(x), 1).gather(1, y.view(-1, 1))[:, 0]


# Faithfulness ------------------------------------------------------------------------------------------------


def pixel_order(maps: torch.Tensor, most_relevant_first: bool = True) -> torch.Tensor:
    """Pixel indices [N, H·W] by |attribution|, most (or least) relevant first."""
    return maps.abs().flatten(1).argsort(dim=1, descending=most_relevant_first, stable=True)


@torch.no_grad()
def perturbation_curve(model: nn.Module, x: torch.Tensor, y: torch.Tensor, order: torch.Tensor, steps: int,
                       insert: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Probability of the true class as pixels are deleted (set to 0, black) in `order`, or inserted into a black
    image; returns the fractions changed [steps + 1] and the curves [N, steps + 1], starting at none changed."""
    flat = x.flatten(1)
    pixels = order.shape[1]
    current = torch.zeros_like(flat) if insert else flat.clone()
    bounds = torch.linspace(0, pixels, steps + 1).round().long().tolist()
    curve = [class_probability(model, current.view_as(x), y)]
    for start, stop in zip(bounds, bounds[1:]):
        index = channel_index(order[:, start:stop], x.shape[1], pixels)
        current.scatter_(1, index, flat.gather(1, index) if insert else torch.zeros_like(index, dtype=flat.dtype))
        curve.append(class_probability(model, current.view_as(x), y))
    return torch.tensor(bounds, dtype=x.dtype) / pixels, torch.stack(curve, 1)


def area_under(fractions: torch.Tensor, curve: torch.Tensor) -> np.ndarray:
    return torch.trapezoid(curve, fractions.to(curve.device), dim=1).cpu().numpy()


def _deletion(e: Evidence, steps: int) -> np.ndarray:
    return area_under(*perturbation_curve(e.model, e.x, e.y, pixel_order(e.maps), steps))


def _insertion(e: Evidence, steps: int) -> np.ndarray:
    return area_under(*perturbation_curve(e.model, e.x, e.y, pixel_order(e.maps), steps, insert=True))


@torch.no_grad()
def road_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, order: torch.Tensor,
                  percentages: tuple[float, ...], noise: float, generator: torch.Generator) -> torch.Tensor:
    """Correct (1) or not (0) [N, P] after the top p% of pixels are removed and filled in from their neighbours
    (ROAD's noisy linear imputation), so that removal leaves no black holes a model could read as a signal."""
    n_pixels = order.shape[1]
    out = []
    for p in percentages:
        removed = torch.zeros_like(x, dtype=torch.bool).flatten(1)
        removed.scatter_(1, channel_index(order[:, :int(n_pixels * p / 100)], x.shape[1], n_pixels), True)
        filled = linear_imputation(x, removed.view_as(x), noise, generator)
        out.append((model(filled).argmax(1) == y).to(x.dtype))
    return torch.stack(out, 1)


def _road(e: Evidence, noise: float) -> np.ndarray:
    percentages = tuple(range(10, 100, 10))
    correct = road_accuracy(e.model, e.x, e.y, pixel_order(e.maps), percentages, noise, e.generator("road"))
    return correct.mean(1).cpu().numpy()


# Robustness --------------------------------------------------------------------------------------------------


def largest_change(maps: torch.Tensor, noisy: list[tuple[torch.Tensor, torch.Tensor]],
                   per_unit_input: bool) -> np.ndarray:
    """Largest ‖a(x) − a(x + δ)‖ over the draws (maps divided by their largest |value|), relative to ‖a(x)‖
    (max-sensitivity) or to ‖δ‖ (a local Lipschitz estimate)."""
    base = unit_max(maps).flatten(1)
    worst = torch.zeros(len(maps), dtype=maps.dtype, device=maps.device)
    for delta, moved in noisy:
        change = (base - unit_max(moved).flatten(1)).norm(dim=1)
        denominator = delta.flatten(1).norm(dim=1) if per_unit_input else base.norm(dim=1)
        worst = torch.maximum(worst, change / denominator)
    return torch.where(base.norm(dim=1) > 0, worst, torch.nan).cpu().numpy()


def _max_sensitivity(e: Evidence, samples: int, radius: float) -> np.ndarray:
    return largest_change(e.maps, e.noisy_maps(samples, radius), per_unit_input=False)


def _local_lipschitz(e: Evidence, samples: int, radius: float) -> np.ndarray:
    return largest_change(e.maps, e.noisy_maps(samples, radius), per_unit_input=True)


# Complexity --------------------------------------------------------------------------------------------------


def gini(maps: torch.Tensor) -> np.ndarray:
    """Gini index of |attribution| (0: spread evenly, 1: one pixel); NaN for an all-zero map."""
    a = maps.abs().flatten(1).double().sort(dim=1).values
    n = a.shape[1]
    weights = 2 * torch.arange(1, n + 1, dtype=a.dtype, device=a.device) - n - 1
    total = a.sum(1)
    return torch.where(total > 0, (a * weights).sum(1) / (n * total), torch.nan).cpu().numpy()


def entropy(maps: torch.Tensor) -> np.ndarray:
    """Shannon entropy (nats) of |attribution| as a distribution over pixels; NaN for an all-zero map."""
    a = maps.abs().flatten(1).double()
    total = a.sum(1, keepdim=True)
    p = a / total.clamp_min(torch.finfo(a.dtype).tiny)
    h = -(p * torch.log(p.clamp_min(torch.finfo(a.dtype).tiny))).sum(1)
    return torch.where(total[:, 0] > 0, h, torch.nan).cpu().numpy()


def _sparseness(e: Evidence) -> np.ndarray:
    return gini(e.maps)


def _entropy(e: Evidence) -> np.ndarray:
    return entropy(e.maps)


# Randomisation -----------------------------------------------------------------------------------------------


def randomisation_similarities(e: Evidence, order: str, use_ssim: bool) -> tuple[list[str], np.ndarray]:
    """Layers (top first) and the similarity [L, N] of each image's |map| before and after that layer (and, when
    cascading, every layer above it) was given random weights."""
    kind = "ssim" if use_ssim else "spearman"
    base = unit_max(e.maps).abs()
    layers, rows = [], []
    for layer, maps in randomised_maps(e.explain, e.model, e.x, e.y, order, e.seed, e._randomised):
        layers.append(layer)
        rows.append(similarity(base, unit_max(maps).abs(), kind))
    return layers, np.stack(rows)


def _mprt_cascading(e: Evidence, ssim: bool) -> np.ndarray:
    return randomisation_similarities(e, "cascading", ssim)[1].mean(0)


def _mprt_independent(e: Evidence, ssim: bool) -> np.ndarray:
    return randomisation_similarities(e, "independent", ssim)[1].mean(0)


def other_classes(y: torch.Tensor, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """A random class other than the true one, per image."""
    shift = torch.randint(1, num_classes, y.shape, generator=generator, device=y.device)
    return (y + shift) % num_classes


def _random_logit(e: Evidence, ssim: bool) -> np.ndarray:
    other = e.explain(e.model, e.x, e.y, other_classes(e.y, e.num_classes, e.generator("logit")))
    return similarity(unit_max(e.maps), unit_max(other), "ssim" if ssim else "spearman")


# Localisation ------------------------------------------------------------------------------------------------


def relevance_mass(maps: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    """Share of |attribution| inside the mask; NaN for an all-zero map."""
    a = maps.abs().flatten(1).double()
    total = a.sum(1)
    inside = (a * mask.flatten(1)).sum(1)
    return torch.where(total > 0, inside / total.clamp_min(torch.finfo(a.dtype).tiny), torch.nan).cpu().numpy()


def relevance_rank(maps: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    """Of the K most relevant pixels (K = the mask's size), the share inside the mask; NaN for an empty mask."""
    m = mask.flatten(1)
    order = pixel_order(maps)
    k = m.sum(1)
    ranks = torch.arange(order.shape[1], device=order.device).expand_as(order)
    hits = (m.gather(1, order) & (ranks < k.view(-1, 1))).sum(1).double()
    return torch.where(k > 0, hits / k.clamp_min(1), torch.nan).cpu().numpy()


def pointing_game(maps: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    """1 where the most relevant pixel lies inside the mask, else 0."""
    top = maps.abs().flatten(1).argmax(1)
    return mask.flatten(1).gather(1, top.view(-1, 1))[:, 0].double().cpu().numpy()


def alignment(x: torch.Tensor, maps: torch.Tensor) -> np.ndarray:
    """Etmann et al. (ICML 2019): |⟨x, a⟩| / (‖x‖ ‖a‖), how much the map looks like the image itself."""
    xs, a = x.mean(1).flatten(1).double(), maps.flatten(1).double()  # a colour image by its channels' mean
    denominator = xs.norm(dim=1) * a.norm(dim=1)
    return torch.where(denominator > 0, (xs * a).sum(1).abs() / denominator.clamp_min(1e-300), torch.nan).cpu().numpy()


def _relevance_mass(e: Evidence) -> np.ndarray:
    return relevance_mass(e.maps, e.mask)


def _relevance_rank(e: Evidence) -> np.ndarray:
    return relevance_rank(e.maps, e.mask)


def _pointing_game(e: Evidence) -> np.ndarray:
    return pointing_game(e.maps, e.mask)


def _alignment(e: Evidence) -> np.ndarray:
    return alignment(e.x, e.maps)


STEPS = Param("steps", "Steps", 16, 2, 784, 1, "int", help="equal steps from no pixel to every pixel")
NOISE = (Param("samples", "Samples", 5, 1, 200, 1, "int", help="noisy copies per image; the score is the largest"),
         Param("radius", "Noise radius", 0.05, 0.0, 1.0, 0.01, help="uniform noise in [−radius, radius] per pixel"))
SSIM = Param("ssim", "SSIM", 0, kind="bool", help="compare maps by SSIM instead of rank correlation")
REGISTRY: dict[str, Metric] = {m.name: m for m in (
    Metric("deletion", "Deletion AUC (most relevant first)", "faithfulness", False, _deletion, (STEPS,),
           quantus="PixelFlipping", help="p(true class) as the most relevant pixels are blacked out; a faithful "
                                         "map makes it fall fast",
           reference="Petsiuk, Das & Saenko 2018 (RISE), arXiv:1806.07421; pixel flipping: Bach et al. 2015, PLoS ONE"),
    Metric("insertion", "Insertion AUC (= deletion, least relevant first)", "faithfulness", True, _insertion,
           (STEPS,), help="the most relevant pixels put into a black image first; a faithful map makes p rise fast. "
                          "Deleting the least relevant first passes through the same images in reverse, so its "
                          "area is the same number",
           reference="Petsiuk, Das & Saenko 2018 (RISE), arXiv:1806.07421"),
    Metric("road", "ROAD accuracy (most relevant first)", "faithfulness", False, _road,
           (Param("noise", "Imputation noise σ", 0.01, 0.0, 0.5, 0.005),), quantus="ROAD",
           help="accuracy after removing 10…90% of pixels, filled in from their neighbours (no out-of-distribution "
                "black holes)",
           reference="Rong et al. 2022 (ROAD), ICML, arXiv:2202.00449"),
    Metric("max-sensitivity", "Max-sensitivity", "robustness", False, _max_sensitivity, NOISE,
           reexplains=True, quantus="MaxSensitivity",
           help="largest ‖Δ map‖ / ‖map‖ of the normalised map under uniform noise",
           reference="Yeh et al. 2019, NeurIPS, arXiv:1901.09392"),
    Metric("local-lipschitz", "Local Lipschitz estimate", "robustness", False, _local_lipschitz, NOISE,
           reexplains=True, quantus="LocalLipschitzEstimate",
           help="largest ‖Δ map‖ / ‖Δ image‖ of the normalised map under the same noise (Quantus draws Gaussian "
                "noise; one set of draws serves both robustness metrics here and halves their cost)",
           reference="Alvarez-Melis & Jaakkola 2018, arXiv:1806.08049"),
    Metric("sparseness", "Sparseness (Gini)", "complexity", True, _sparseness, quantus="Sparseness",
           help="how concentrated |map| is on few pixels",
           reference="Chalasani et al. 2020, ICML, arXiv:1810.06583"),
    Metric("entropy", "Complexity (entropy)", "complexity", False, _entropy, quantus="Complexity",
           help="entropy of |map| as a distribution over pixels",
           reference="Bhatt, Weller & Moura 2020, IJCAI, arXiv:2005.00631"),
    Metric("mprt-cascading", "Parameter randomisation, cascading", "randomisation", False, _mprt_cascading, (SSIM,),
           reexplains=True, quantus="MPRT",
           help="similarity of the map to the maps of ever more randomised models, top layer down (mean over layers)",
           reference="Adebayo et al. 2018 (sanity checks), NeurIPS, arXiv:1810.03292"),
    Metric("mprt-independent", "Parameter randomisation, per layer", "randomisation", False, _mprt_independent,
           (SSIM,), reexplains=True, quantus="MPRT",
           help="similarity of the map to the maps of models with one layer randomised (mean over layers)",
           reference="Adebayo et al. 2018 (sanity checks), NeurIPS, arXiv:1810.03292"),
    Metric("random-logit", "Random logit", "randomisation", False, _random_logit,
           (Param("ssim", "SSIM", 1, kind="bool", help="compare maps by SSIM instead of rank correlation"),),
           reexplains=True, quantus="RandomLogit",
           help="similarity of the map of the true class to that of a random other class",
           reference="Sixt, Granz & Landgraf 2020, ICML, arXiv:1912.09818"),
    Metric("relevance-mass", "Relevance mass on the object", "localisation", True, _relevance_mass,
           quantus="RelevanceMassAccuracy", help="share of |map| inside the object mask",
           reference="Arras, Osman & Samek 2022 (CLEVR-XAI), Information Fusion, arXiv:2003.07258"),
    Metric("relevance-rank", "Relevance rank on the object", "localisation", True, _relevance_rank,
           quantus="RelevanceRankAccuracy", help="of the K most relevant pixels (K = mask size), the share inside",
           reference="Arras, Osman & Samek 2022 (CLEVR-XAI), Information Fusion, arXiv:2003.07258"),
    Metric("pointing-game", "Pointing game", "localisation", True, _pointing_game, quantus="PointingGame",
           help="whether the most relevant pixel is on the object",
           reference="Zhang et al. 2018 (excitation backprop), IJCV, arXiv:1608.00507"),
    Metric("alignment", "Alignment |⟨x, a⟩| / ‖x‖‖a‖", "localisation", True, _alignment,
           help="Etmann et al. 2019: how much the map looks like the image",
           reference="Etmann et al. 2019, ICML, arXiv:1905.04172"),
)}


def get_metric(name: str) -> Metric:
    """The registry entry called `name`, or a ValueError that lists the metrics there are."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown metric {name!r}; choose from {', '.join(REGISTRY)}") from None
