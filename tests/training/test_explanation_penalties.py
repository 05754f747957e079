"""The explanation penalties beside RRR: counterexamples (Teso & Kersting 2019) and RRR-G, a penalty on the Grad-CAM
map (Schramowski et al. 2020). Each is checked against an independent computation, and each must move a model off
Decoy MNIST's swatch."""
import pytest
import torch
from captum.attr import LayerAttribution, LayerGradCam
from torch import nn

from gradviz.data.datasets import load_dataset, load_masks
from gradviz.nets.architecture import PaperCNN
from gradviz.training.cam_penalty import NoConvolution, cam_penalty, gradcam, last_convolution, logits_and_activations
from gradviz.training.config import TrainConfig
from gradviz.training.defenses import DEFENSE_SPECS, LossSettings, batch_loss, counterexamples
from gradviz.training.loop import train_model
from gradviz.training.penalties import log_probability_sums


def _corner_masks(n: int, side: int = 28) -> torch.Tensor:
    masks = torch.zeros(n, 1, side, side, dtype=torch.bool)
    masks[: n // 2, :, :4, :4] = True  # the second half carries no annotation
    return masks


def test_gradcam_equals_captums_layer_gradcam_upsampled():
    torch.manual_seed(0)
    model = PaperCNN(width=16).eval()
    x, y = torch.rand(5, 1, 28, 28), torch.tensor([0, 3, 5, 7, 9])
    logits, activations = logits_and_activations(model, x)
    ours = gradcam(logits, activations, y, (28, 28), create_graph=False)
    layer = LayerGradCam(model, model.features[4]).attribute(x, target=y, relu_attributions=True)
    theirs = LayerAttribution.interpolate(layer, (28, 28), interpolate_mode="bilinear")
    assert last_convolution(model) is model.features[4]
    assert torch.allclose(ours, theirs, atol=1e-6) and ours.abs().sum() > 0


def test_the_cam_penalty_is_the_masked_peak_scaled_maps_squared_norm_and_reaches_the_weights():
    torch.manual_seed(0)
    model = PaperCNN(width=16).eval()
    x, y, masks = torch.rand(6, 1, 28, 28), torch.arange(6), _corner_masks(6).float()
    logits, penalty = cam_penalty(model, x, y, masks)
    cam = gradcam(*logits_and_activations(model, x), y, (28, 28), create_graph=False)
    peak = cam.flatten(1).amax(1).view(-1, 1, 1, 1)
    assert torch.allclose(penalty, (cam / (peak + 1e-8) * masks).pow(2).flatten(1).sum(1).mean())  # 0 for a zero map
    assert torch.allclose(cam_penalty(model, x * 1.0, y, masks)[1], penalty)  # each map by its own peak
    penalty.backward()
    assert model.features[0].weight.grad.abs().sum() > 0  # a second derivative through the Grad-CAM weights


def test_a_model_without_a_convolution_is_refused_for_rrr_g_by_name():
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    with pytest.raises(NoConvolution, match="Sequential has no nn.Conv2d.*rrr.*counterexamples"):
        batch_loss(mlp, torch.rand(4, 1, 28, 28), torch.arange(4), LossSettings("rrr-g", lam=1.0),
                   mask=_corner_masks(4))


def test_counterexamples_randomise_only_the_marked_pixels_of_annotated_images():
    torch.manual_seed(0)
    x, y, masks = torch.rand(6, 1, 28, 28), torch.arange(6), _corner_masks(6)
    copies, labels = counterexamples(x, y, masks)
    assert labels.tolist() == [0, 1, 2] and copies.shape == (3, 1, 28, 28)
    assert torch.equal(copies[~masks[:3]], x[:3][~masks[:3]])
    assert (copies[masks[:3]] != x[:3][masks[:3]]).all()
    loss, stats = batch_loss(PaperCNN(width=8).train(), x, y, LossSettings("counterexamples"), mask=masks)
    assert stats["penalty"] == 0 and torch.isfinite(loss)


def test_each_new_defense_names_where_it_comes_from():
    for name in ("rrr", "rrr-g", "counterexamples"):
        assert "20" in DEFENSE_SPECS[name].reference and DEFENSE_SPECS[name].masked


def _swatch_share(model, x, masks) -> float:
    """Share of |∇ₓ Σ log p| (the map RRR penalises) that lies on the swatch."""
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(log_probability_sums(model(x)).sum(), x)
    return float((grad.abs() * masks).sum() / grad.abs().sum())


@pytest.fixture(scope="module")
def normal_share():
    x, y = load_dataset("decoy-mnist", "train")
    masks = load_masks("decoy-mnist", "train")
    config = TrainConfig(dataset="decoy-mnist", defense="normal", steps=60, batch_size=64, width=16, device="cpu")
    model, _ = train_model(config, (x[:384], y[:384], masks[:384]), progress=False)
    return _swatch_share(model.eval(), x[384:640], masks[384:640])


@pytest.mark.slow
@pytest.mark.parametrize("defense,lam", [("rrr-g", 1.0), ("counterexamples", 0.0)])
def test_each_explanation_penalty_moves_a_model_off_the_swatch(defense, lam, normal_share):
    x, y = load_dataset("decoy-mnist", "train")
    masks = load_masks("decoy-mnist", "train")
    config = TrainConfig(dataset="decoy-mnist", defense=defense, lam=lam, steps=60, batch_size=64, width=16,
                         device="cpu")
    model, card = train_model(config, (x[:384], y[:384], masks[:384]), progress=False)
    share = _swatch_share(model.eval(), x[384:640], masks[384:640])
    assert share < normal_share, (share, normal_share)
    assert card["defense"] == defense
