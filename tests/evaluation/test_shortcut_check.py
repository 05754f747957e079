"""Before and after: the shortcut numbers of the Annotate page, against hand-made models that read or ignore the
swatch."""
import numpy as np
import pytest
import torch
from torch import nn

from gradviz.data.datasets import load_dataset, load_masks
from gradviz.data.ground_truth import swatch_codes
from gradviz.evaluation.runs.shortcut_check import shortcut_table


class SwatchReader(nn.Module):
    """Predicts the class the swatch's grey codes (a perfect Clever Hans)."""

    def forward(self, x):
        # a digit leaves the 4×4 corners black, so the brightest corner is the swatch
        corners = torch.stack([x[:, 0, r:r + 4, c:c + 4].mean((1, 2)) for r in (0, 24) for c in (0, 24)], 1)
        grey = corners.amax(1, keepdim=True)
        codes = (255 - 25 * torch.arange(10, dtype=x.dtype)) / 255
        return -(grey - codes).abs() * 100  # the nearest code wins; the gradient lies on the swatch alone


def test_a_swatch_reader_follows_it_and_loses_its_accuracy_without_it():
    x, y = load_dataset("decoy-mnist", "test")
    masks = load_masks("decoy-mnist", "test")
    codes = swatch_codes(x[:200].numpy(), masks[:200].numpy())
    table = shortcut_table({"reader": SwatchReader()}, "decoy-mnist", n=200)
    row = table.iloc[0]
    assert row["accuracy"] == pytest.approx(float(np.mean(codes == y[:200].numpy())))
    assert row["follows the swatch"] == 1.0
    assert row["accuracy without the shortcut"] < 0.3
    assert row["share of |gradient| on the marked region"] > 0.99


def test_a_dataset_without_test_masks_is_refused():
    with pytest.raises(ValueError, match="no masks"):
        shortcut_table({}, "mnist", n=10)


def test_the_before_after_sentence_says_which_way_the_shortcut_went_beyond_noise():
    import pandas as pd

    from gradviz.evaluation.runs.shortcut_check import change_sentence

    def table(after_free: float, after_share: float) -> pd.DataFrame:
        return pd.DataFrame([{"model": "a", "accuracy without the shortcut": 0.70,
                              "share of |gradient| on the marked region": 0.10},
                             {"model": "b", "accuracy without the shortcut": after_free,
                              "share of |gradient| on the marked region": after_share}])

    assert change_sentence(table(0.93, 0.02), "a", "b", 500).startswith(
        "**b** uses the shortcut less than a: accuracy without the shortcut 0.700 → 0.930")
    assert "does worse without the shortcut than" in change_sentence(table(0.60, 0.12), "a", "b", 500)
    # 0.70 → 0.72 on 500 images is within two standard errors (±0.057): no claim either way
    assert "is not clearly different (within ±0.057) from a" in change_sentence(table(0.72, 0.09), "a", "b", 500)
    assert "uses the shortcut less" in change_sentence(table(0.72, 0.09), "a", "b", 10_000)  # ±0.013 on 10,000


def test_the_shortcut_check_takes_any_module_mapping_images_to_logits():
    """Not only our CNN: an nn.Sequential MLP gets the same four numbers, each a share in [0, 1]."""
    import torch
    from torch import nn

    from gradviz.evaluation.runs.shortcut_check import ShortcutData

    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10))
    measured = ShortcutData.load("decoy-mnist", 100).measure(mlp.eval())
    assert set(measured) == {"accuracy", "accuracy without the shortcut", "share of |gradient| on the marked region",
                             "follows the swatch"}
    assert all(0.0 <= v <= 1.0 for v in measured.values())
