"""The "Your model & data" page: an .npz dataset and an ONNX model (or safetensors weights for a registered
architecture) uploaded in the browser are registered, a bad one is refused with its message."""
import io

import numpy as np
import torch
from page_helpers import page
from safetensors.torch import save as save_safetensors

from gradviz.data.datasets import dataset_names
from gradviz.nets.cards import list_models
from gradviz.registry.models import ModelSpec, register_model


def _npz(classes: int = 2) -> bytes:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    np.savez(buffer, x_train=rng.integers(0, 255, (40, 32, 32, 3), np.uint8), y_train=np.arange(40) % classes,
             x_test=rng.integers(0, 255, (10, 32, 32, 3), np.uint8), y_test=np.arange(10) % classes)
    return buffer.getvalue()


def _add_dataset(at, name: str, data: bytes):
    at.text_input[0].set_value(name)
    at.file_uploader(key="dataset_npz").upload("data.npz", data, "application/octet-stream")
    at.button[0].click().run()
    assert not at.exception, at.exception
    return at


def test_an_npz_upload_becomes_a_dataset_and_a_bad_one_is_refused():
    at = page("bring")
    _add_dataset(at, "uploaded", _npz())
    assert "uploaded" in dataset_names() and any("Registered **uploaded**" in s.value for s in at.success)
    _add_dataset(at, "single", _npz(classes=1))
    assert any("at least two distinct classes" in e.value for e in at.error) and "single" not in dataset_names()


def test_an_onnx_upload_and_weights_for_a_registered_architecture(tmp_path):
    from external_models import FlatNet

    at = page("bring")
    _add_dataset(at, "uploaded", _npz())
    torch.onnx.export(FlatNet(num_classes=2).eval(), torch.rand(1, 3, 32, 32), tmp_path / "m.onnx", dynamo=False,
                      input_names=["x"], dynamic_axes={"x": {0: "n"}})
    at = page("bring")
    at.selectbox(key="bring_dataset").set_value("uploaded")
    at.text_input(key="bring_name").set_value("uploaded-onnx")
    at.file_uploader(key="model_file").upload("m.onnx", (tmp_path / "m.onnx").read_bytes(), "application/octet-stream")
    at.button[1].click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    register_model(ModelSpec("flat", "uploaded", import_path="external_models:FlatNet", kwargs={"num_classes": 2}))
    weights = save_safetensors(FlatNet(num_classes=2).state_dict())
    at = page("bring")
    at.selectbox(key="bring_dataset").set_value("uploaded")
    at.text_input(key="bring_name").set_value("flat-weights")
    at.radio(key="bring_kind").set_value("safetensors weights for a registered architecture")
    at.selectbox(key="bring_arch").set_value("flat")
    at.file_uploader(key="model_file").upload("w.safetensors", weights, "application/octet-stream")
    at.button[1].click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert {"uploaded-onnx", "flat-weights"} <= {c["name"] for c in list_models()}
