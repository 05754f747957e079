"""gradviz models add: a model no one here wrote — by import path, TorchScript or ONNX — registered for a dataset,
checked, loaded like a zoo model, trained with any defense; or a clear message and nothing registered."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from gradviz.cli.main import main
from gradviz.data.adding import add_dataset
from gradviz.data.colour_digits import write_colour_folder
from gradviz.data.datasets import load_arrays
from gradviz.nets.external import ExternalModelError, onnx_module
from gradviz.nets.store import load_model
from gradviz.registry.models import ModelSpec, compare_with_onnxruntime, register_model
from gradviz.training.config import TrainConfig
from gradviz.training.loop import train_model


@pytest.fixture
def colour(tmp_path):
    arrays = load_arrays("mnist")
    folder = write_colour_folder(tmp_path / "colour", arrays.test_x[:200], arrays.test_y[:200],
                                 {"train": slice(0, 150), "test": slice(150, 200)})
    add_dataset("colour", folder)
    return "colour"


def input_gradient(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    grad, = torch.autograd.grad(model(x).logsumexp(1).sum(), x)
    return grad


def files(user_models) -> list[str]:
    return sorted(p.name for p in user_models.iterdir()) if user_models.is_dir() else []


def test_an_import_path_with_weights_is_framed_in_pixel_space(colour, user_models, tmp_path):
    from external_models import TinyNet

    net = TinyNet()
    save_file(net.state_dict(), str(tmp_path / "w.safetensors"))
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
    register_model(ModelSpec("tiny", colour, import_path="external_models:TinyNet", weights=tmp_path / "w.safetensors",
                             mean=mean, std=std))
    model, card = load_model("tiny")
    x = torch.rand(4, 3, 32, 32)
    normalised = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(model(x), net.eval()(normalised))  # the normalisation is inside the model
    arch = card["architecture"]
    assert arch["target"] == "external_models:TinyNet" and arch["input"]["mean"] == mean
    assert any(path.endswith("external_models.py") and len(digest) == 64 for path, digest in arch["sources"].items())
    assert card["dataset"] == colour and card["class_names"][0] == "digit-0" and card["n_test"] == 50


def test_resnet18_from_torchvision_and_timm_on_one_and_three_channels(colour, mnist_test):
    register_model(ModelSpec("tv3", colour, import_path="torchvision.models:resnet18", kwargs={"num_classes": 10}))
    register_model(ModelSpec("tv1", "mnist", import_path="torchvision.models:resnet18", kwargs={"num_classes": 10}))
    register_model(ModelSpec("timm1", "mnist", import_path="timm:create_model",
                             kwargs={"model_name": "resnet18", "in_chans": 1, "num_classes": 10}))
    x = mnist_test[0][:2]
    for name, grey_to_rgb in (("tv1", True), ("timm1", False)):
        model, card = load_model(name)
        assert card["architecture"]["input"]["grey_to_rgb"] is grey_to_rgb
        assert model(x).shape == (2, 10) and input_gradient(model, x).shape == x.shape
    model, _ = load_model("tv3")
    assert input_gradient(model, torch.rand(2, 3, 32, 32)).shape == (2, 3, 32, 32)


BAD_IMPORTS = {
    "does not import": (dict(import_path="no_such_package.models:Net"), "does not import"),
    "not a plain path": (dict(import_path="os.system('x'):y"), "is refused"),
    "no such attribute": (dict(import_path="external_models:Missing"), "has no attribute 'Missing'"),
    "factory fails": (dict(import_path="external_models:failing_factory"), "always fails"),
    "output not [N, classes]": (dict(import_path="external_models:PooledFeatures"), "returns 3 logits but colour has 10"),
    "wrong class count": (dict(import_path="external_models:TinyNet", kwargs={"num_classes": 4}),
                          "returns 4 logits"),
    "shape mismatch": (dict(import_path="external_models:TinyNet", kwargs={"channels": 1}),
                       r"does not take colour's images \[N, 3, 32, 32\]"),
    "mean of the wrong length": (dict(import_path="external_models:TinyNet", mean=[0.5], std=[0.5]),
                                 "need 3 values"),
}


@pytest.mark.parametrize("case", list(BAD_IMPORTS))
def test_a_bad_model_is_named_and_nothing_is_registered(colour, user_models, case):
    given, message = BAD_IMPORTS[case]
    with pytest.raises(ExternalModelError, match=message):
        register_model(ModelSpec("mine", colour, **given))
    assert files(user_models) == []


def test_weights_that_do_not_fit_or_are_pickles_are_refused(colour, user_models, tmp_path):
    from external_models import TinyNet

    save_file(TinyNet(num_classes=4).state_dict(), str(tmp_path / "other.safetensors"))
    with pytest.raises(ExternalModelError, match="do not fit the network"):
        register_model(ModelSpec("mine", colour, import_path="external_models:TinyNet",
                                 weights=tmp_path / "other.safetensors"))
    torch.save(TinyNet().state_dict(), tmp_path / "pickled.pt")
    with pytest.raises(ExternalModelError, match="never unpickles"):
        register_model(ModelSpec("mine", colour, import_path="external_models:TinyNet", weights=tmp_path / "pickled.pt"))
    assert files(user_models) == []


def test_an_onnx_file_converts_and_its_gradients_equal_the_originals(colour, user_models, tmp_path):
    from external_models import FlatNet

    net = FlatNet().eval()
    torch.onnx.export(net, torch.rand(2, 3, 32, 32), tmp_path / "tiny.onnx", dynamo=False, input_names=["x"],
                      dynamic_axes={"x": {0: "n"}})
    register_model(ModelSpec("tiny-onnx", colour, onnx=tmp_path / "tiny.onnx"))
    assert files(user_models) == ["tiny-onnx.json", "tiny-onnx.onnx", "tiny-onnx.safetensors"]
    model, card = load_model("tiny-onnx")
    assert card["architecture"]["converter"].startswith("onnx2torch ")
    x = torch.rand(8, 3, 32, 32)
    torch.testing.assert_close(input_gradient(model, x), input_gradient(net, x), atol=1e-6, rtol=1e-4)


def test_an_onnx_operator_without_a_conversion_is_named(colour, user_models, tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.random.default_rng(0).random((3 * 32 * 32, 10), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Shrink", ["x"], ["s"], lambd=0.2), helper.make_node("Flatten", ["s"], ["f"]),
         helper.make_node("MatMul", ["f", "w"], ["logits"])], "shrinking",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 10])], [weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "shrink.onnx")
    with pytest.raises(ExternalModelError, match="ONNX operator Shrink has no differentiable torch conversion"):
        register_model(ModelSpec("shrink", colour, onnx=tmp_path / "shrink.onnx"))
    assert files(user_models) == []


def test_a_conversion_that_differs_from_onnxruntime_names_the_first_operator(tmp_path):
    from external_models import FlatNet

    net = FlatNet().eval()
    torch.onnx.export(net, torch.rand(2, 3, 32, 32), tmp_path / "tiny.onnx", dynamo=False)
    converted = onnx_module(tmp_path / "tiny.onnx")
    compare_with_onnxruntime(tmp_path / "tiny.onnx", converted, (3, 32, 32))  # agrees: passes
    with torch.no_grad():
        dict(converted.named_modules())["fc/Gemm"].bias.add_(1.0)  # a conversion that went wrong at the last operator
    with pytest.raises(ExternalModelError, match=r"first operator that differs: Gemm"):
        compare_with_onnxruntime(tmp_path / "tiny.onnx", converted, (3, 32, 32))


def test_a_torchscript_archive_registers_from_the_cli(colour, user_models, tmp_path, capsys):
    from external_models import TinyNet

    net = TinyNet().eval()
    torch.jit.script(net).save(str(tmp_path / "tiny.pt"))
    assert main(["models", "add", "scripted", "--dataset", colour, "--torchscript", str(tmp_path / "tiny.pt")]) == 0
    assert "registered scripted (torchscript" in capsys.readouterr().out
    model, _ = load_model("scripted")
    x = torch.rand(4, 3, 32, 32)
    torch.testing.assert_close(input_gradient(model, x), input_gradient(net, x))
    assert main(["models", "add", "bad", "--dataset", colour, "--import", "external_models:TinyNet",
                 "--kwargs", "[1]"]) == 2
    assert "JSON object" in capsys.readouterr().err


@pytest.mark.parametrize("defense", ["normal", "gradreg", "advtrain", "distilled"])
def test_every_defense_trains_a_model_by_import_path(colour, defense):
    config = TrainConfig(dataset=colour, defense=defense, lam=1.0 if defense == "gradreg" else 0.0, steps=2,
                         batch_size=16, device="cpu", model="external_models:TinyNet")
    model, card = train_model(config, progress=False)
    assert card["architecture"]["target"] == "external_models:TinyNet" and card["model"] == config.model
    assert np.isfinite(card["final_train_stats"]["loss"])
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    assert config.default_name() == f"colour-tinynet-{defense}" + ("-lam1" if defense == "gradreg" else "")


def test_a_trained_outside_model_saves_and_loads_again(colour, user_models):
    from gradviz.training.loop import train_and_save

    path, card = train_and_save(TrainConfig(dataset=colour, defense="gradreg", lam=1.0, steps=2, batch_size=16,
                                            device="cpu", model="external_models:TinyNet", name="tiny-gradreg"))
    model, loaded = load_model("tiny-gradreg")
    assert json.loads(path.read_text())["architecture"] == loaded["architecture"]
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_a_checkpoint_of_an_outside_model_rebuilds_and_a_recipe_may_name_one(colour, tmp_path):
    from gradviz.experiments.recipe import load_recipe
    from gradviz.nets.checkpoints import model_from_checkpoint

    config = TrainConfig(dataset=colour, defense="gradreg", lam=1.0, steps=2, batch_size=16, device="cpu",
                         model="external_models:TinyNet")
    from gradviz.nets.checkpoints import load_checkpoint

    train_model(config, progress=False, checkpoint=tmp_path / "run.ckpt", checkpoint_every=1)
    rebuilt = model_from_checkpoint(tmp_path / "run.ckpt", (32, 32), 10, channels=3)
    saved = load_checkpoint(tmp_path / "run.ckpt").model
    assert all(torch.equal(v, saved[k]) for k, v in rebuilt.state_dict().items())
    assert rebuilt(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    recipe_file = tmp_path / "r.toml"
    recipe_file.write_text(f'dataset = "{colour}"\n[models.tiny]\ndefense = "gradreg"\nlam = 1.0\n'
                           'model = "external_models:TinyNet"\nsteps = 2\n')
    recipe = load_recipe(recipe_file)
    assert recipe.models["tiny"].config.model == "external_models:TinyNet"
