"""The two layer styles of PaperCNN: the zoo's, and the reference code's exact layers (shared/PAPER.md)."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gradviz.nets.architecture import PaperCNN, ShiftOnlyBatchNorm, build_model, describe
from gradviz.nets.store import load_model, save_model
from gradviz.training.config import TrainConfig
from gradviz.training.loop import train_model


def test_reference_layers_are_conv_bn_relu_pool_with_shift_only_batch_norm_and_no_bias_before_it():
    model = PaperCNN(width=1024, layers="reference")
    kinds = [type(m).__name__ for m in [*model.features, *model.classifier]]
    assert kinds == ["Conv2d", "ShiftOnlyBatchNorm", "ReLU", "MaxPool2d", "Conv2d", "ShiftOnlyBatchNorm", "ReLU",
                     "MaxPool2d", "Flatten", "Linear", "ShiftOnlyBatchNorm", "ReLU", "Dropout", "Linear"]
    norms = [m for m in model.modules() if isinstance(m, ShiftOnlyBatchNorm)]
    assert all(m.weight is None and m.bias.requires_grad and m.eps == 1e-3 and m.momentum == 0.1 for m in norms)
    layers = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    assert [m.bias is None for m in layers] == [True, True, True, False]  # only the logits keep a bias
    assert 3_200_000 < sum(p.numel() for p in model.parameters()) < 3_400_000  # the paper's "about 3.3 M"
    fc = layers[2]  # Xavier-uniform: bound √(6 / (fan_in + fan_out))
    bound = math.sqrt(6 / (fc.in_features + fc.out_features))
    assert fc.weight.abs().max() <= bound and fc.weight.abs().max() > 0.95 * bound


def test_shift_only_batch_norm_normalises_then_shifts_and_has_nothing_to_rescale():
    norm = ShiftOnlyBatchNorm(3).train()
    with torch.no_grad():
        norm.bias.fill_(0.5)
    x = torch.randn(64, 3, 5, 5) * 4 + 2
    out = norm(x)
    assert torch.allclose(out.mean((0, 2, 3)), torch.full((3,), 0.5), atol=1e-5)
    assert torch.allclose(out.var((0, 2, 3), unbiased=False), torch.ones(3), atol=1e-3)
    assert [n for n, _ in norm.named_parameters()] == ["bias"]
    with pytest.raises(ValueError, match="2-D or 4-D"):
        norm(torch.zeros(2, 3, 4))


@pytest.mark.slow
def test_a_reference_style_model_trains_saves_and_loads_as_itself(tiny_train, tmp_path):
    config = TrainConfig(defense="gradreg", lam=1.0, steps=3, batch_size=32, width=16, layers="reference",
                         device="cpu", name="ref")
    model, card = train_model(config, tiny_train, progress=False)
    assert card["architecture"]["layers"] == "reference" and card["layers"] == "reference"
    loaded, _ = load_model(save_model(model, card, tmp_path))
    x = tiny_train[0][:8]
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
    # trained channels-last, loaded in the default layout: the same function to float rounding
    torch.testing.assert_close(loaded(x), model.eval()(x), rtol=1e-5, atol=1e-6)
    assert describe(build_model({"name": "PaperCNN", "width": 16}))["layers"] == "zoo"  # cards before styles


def test_an_unknown_layer_style_is_refused():
    with pytest.raises(ValueError, match="unknown layer style 'tf'"):
        TrainConfig(layers="tf").validate()
