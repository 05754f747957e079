"""The README's worked example, small: torchvision's ResNet-18 on a 3-channel image folder written from real MNIST
digits, trained as normal and as gradreg through the CLI, evaluated (with the masking check), interpreted,
reported as a pair, shown on the Saliency page; and a ResNet-18 the test builds, exported to ONNX, registered
through the CLI and differentiated like the original."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import torch

from gradviz.data.colour_digits import write_colour_digits

pytestmark = pytest.mark.slow
PAIR = ("rn18-normal", "rn18-gradreg")


@pytest.fixture(scope="module")
def worked(tmp_path_factory):
    work = tmp_path_factory.mktemp("worked")
    env = {**os.environ, "GRADVIZ_HOME": str(work / "home"), "GRADVIZ_USER_MODELS": str(work / "home" / "models"),
           "GRADVIZ_USER_DATASETS": str(work / "home" / "datasets"),
           "GRADVIZ_CHECKPOINTS": str(work / "home" / "checkpoints")}

    def cli(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "gradviz", *args], env=env, capture_output=True, text=True,
                              timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    write_colour_digits(work / "folder", train=320, test=100)
    assert "320 train + 100 test colour images of 32×32, 10 classes" in cli("data", "add", "colour-digits",
                                                                           str(work / "folder"))
    resnet = ["--dataset", "colour-digits", "--model", "torchvision.models:resnet18", "--model-kwargs",
              '{"num_classes": 10}', "--steps", "10", "--batch-size", "32"]
    cli("train", *resnet, "--defense", "normal", "--name", PAIR[0])
    cli("train", *resnet, "--defense", "gradreg", "--lam", "1", "--lam-warmup", "0.2", "--name", PAIR[1])
    cli("evaluate", "--dataset", "colour-digits", "--models", ",".join(PAIR), "--attacks", "fgsm", "--n", "32",
        "--eps", "0.1,0.3", "--out", str(work / "evaluation"))
    cli("interpret", "--dataset", "colour-digits", "--models", ",".join(PAIR), "--methods", "gradient-logp",
        "--metrics", "deletion,sparseness,relevance-mass", "--n", "8", "--out", str(work / "interpretation"))
    cli("reproduce", "--pair", ",".join(PAIR), "--evaluation", str(work / "evaluation"), "--interpretation",
        str(work / "interpretation"), "--out", str(work / "pair.md"))
    return work, env, cli


def test_the_pair_is_trained_evaluated_interpreted_and_reported(worked):
    work, _, _ = worked
    for name in PAIR:
        card = json.loads((work / "home" / "models" / f"{name}.json").read_text())
        assert card["architecture"]["target"] == "torchvision.models:resnet18"
        assert card["architecture"]["input"]["channels"] == 3 and card["dataset"] == "colour-digits"
        assert card["data_sha256"]["arrays.npz"] == json.loads(
            (work / "home" / "datasets" / "colour-digits" / "dataset.json").read_text())["sha256"]
    rows = pd.read_csv(work / "evaluation" / "results.csv")
    assert set(rows.source) == set(PAIR) and set(rows.eps) == {0.1, 0.3} and rows.n.eq(32).all()
    summary = pd.read_csv(work / "interpretation" / "summary.csv")
    assert set(summary.model) == set(PAIR) and summary["mean"].notna().all()
    report = (work / "pair.md").read_text()
    assert f"# Does input-gradient regularization help {PAIR[1]}?" in report
    assert ("**Helped at ε" in report) or ("**Not shown**" in report)
    assert "Gradient masking flagged" in report and "## Saliency maps, measured" in report


def test_the_pair_is_on_the_saliency_page(worked, monkeypatch):
    from page_helpers import page

    work, env, _ = worked
    for key in ("GRADVIZ_HOME", "GRADVIZ_USER_MODELS", "GRADVIZ_USER_DATASETS"):
        monkeypatch.setenv(key, env[key])
    at = page("saliency")
    at.selectbox(key="dataset").set_value("colour-digits").run()
    assert not at.exception, at.exception
    assert at.multiselect(key="models_colour-digits").value == list(PAIR)
    assert '"type":"image"' in at.get("plotly_chart")[0].proto.spec.replace(" ", "")


def test_an_onnx_export_of_a_resnet_registers_and_differentiates_like_the_original(worked, tmp_path, monkeypatch):
    import torchvision

    _, env, cli = worked
    net = torchvision.models.resnet18(num_classes=10).eval()
    torch.onnx.export(net, torch.rand(1, 3, 32, 32), tmp_path / "resnet18.onnx", dynamo=False, input_names=["x"],
                      dynamic_axes={"x": {0: "n"}})
    assert "registered rn18-onnx (onnx" in cli("models", "add", "rn18-onnx", "--dataset", "colour-digits", "--onnx",
                                               str(tmp_path / "resnet18.onnx"))
    monkeypatch.setenv("GRADVIZ_USER_MODELS", env["GRADVIZ_USER_MODELS"])
    from gradviz.nets.store import load_model

    model, card = load_model("rn18-onnx")
    x = torch.rand(8, 3, 32, 32)

    def gradient(m):
        xi = x.clone().requires_grad_(True)
        return torch.autograd.grad(m(xi).logsumexp(1).sum(), xi)[0]

    torch.testing.assert_close(gradient(model), gradient(net), atol=1e-6, rtol=1e-4)
