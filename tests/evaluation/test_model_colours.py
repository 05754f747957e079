"""One colour per model: the same model wears the same colour on every figure of a page, whatever order each
figure lists the models in, and the zoo's defenses keep their own."""
import pandas as pd

from gradviz.evaluation.figures import (
    DEFENSE_COLOURS,
    accuracy_curves,
    model_colours,
    probability_bars,
    whitebox_transfer_figure,
)

ZOO = ["mnist-normal", "mnist-distilled", "mnist-advtrain", "mnist-gradreg-uniform", "mnist-gradreg",
       "mnist-gradreg-advtrain", "mnist-normal-paper", "mnist-gradreg-paper"]


def test_colours_follow_the_name_not_the_order():
    colours = model_colours(ZOO)
    assert colours == model_colours(list(reversed(ZOO)))
    assert len(set(colours.values())) == len(ZOO)  # distinct within a figure of up to 8 models
    for defense in ("normal", "distilled", "advtrain", "gradreg", "gradreg-uniform", "gradreg-advtrain"):
        assert colours[f"mnist-{defense}"] == DEFENSE_COLOURS[defense]
    assert model_colours(["resnet18-gradreg", "resnet18-normal"]) == {
        "resnet18-gradreg": DEFENSE_COLOURS["gradreg"], "resnet18-normal": DEFENSE_COLOURS["normal"]}


def _rows(models: list[str]) -> pd.DataFrame:
    rows = [{"source": s, "target": t, "attack": "fgsm", "eps": e, "accuracy": 0.5, "correct": 50, "n": 100,
             "ci_low": 0.4, "ci_high": 0.6, "whitebox": s == t} for s in models for t in models for e in (0.0, 0.1)]
    return pd.DataFrame(rows)


def _trace_colours(fig) -> dict[str, str]:
    out = {}
    for trace in fig.data:
        colour = getattr(getattr(trace, "line", None), "color", None) or getattr(trace.marker, "color", None)
        name = (trace.name or "").removesuffix(" white-box").removesuffix(" transfer (mean)")
        if name in ZOO and isinstance(colour, str):
            out.setdefault(name, colour)
    return out


def test_two_figures_of_the_robustness_page_agree_on_every_models_colour():
    models = ["mnist-gradreg", "mnist-normal", "mnist-advtrain", "mnist-gradreg-paper", "mnist-normal-paper"]
    curves = _trace_colours(accuracy_curves(_rows(models), "fgsm"))
    shuffled = _trace_colours(whitebox_transfer_figure(_rows(list(reversed(models))), "fgsm"))
    bars = _trace_colours(probability_bars({m: [0.5, 0.5] for m in models[::2]}, ["a", "b"]))
    assert curves and shuffled and all(curves[m] == shuffled[m] for m in set(curves) & set(shuffled))
    assert all(bars[m] == model_colours(models[::2])[m] for m in bars)
