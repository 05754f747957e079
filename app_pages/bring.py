"""Your model & data: register a dataset (.npz) or a model (ONNX, or safetensors weights for an architecture that is
registered already) from the browser. Only formats that hold no code are taken here; an import path or a
TorchScript archive is registered from the command line (`gradviz models add --help`)."""
import tempfile
from pathlib import Path

import streamlit as st

from gradviz.data.adding import DatasetInputError, add_dataset
from gradviz.data.datasets import dataset_names, input_shape
from gradviz.nets.cards import list_models
from gradviz.nets.external import ExternalModelError
from gradviz.paths import UnsafeNameError
from gradviz.registry.models import ModelSpec, register_model

UPLOAD_MB = 200
REFUSALS = (DatasetInputError, ExternalModelError, UnsafeNameError, ValueError)

st.title("Your model & data")
st.caption("Bring a dataset and a model of your own; every page and command then offers them. From the command line "
           "you can also register an image folder (`gradviz data add NAME PATH`), a PyTorch class by import path or "
           "a TorchScript archive (`gradviz models add --help`).")


def _staged(upload, suffix: str, work) -> object:
    """Run `work(path)` on the upload written to a private temporary file (removed afterwards)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"upload{suffix}"
        path.write_bytes(upload.getvalue())
        return work(path)


st.header("Add a dataset")
with st.form("add_dataset", clear_on_submit=False):
    name = st.text_input("Name", placeholder="my-dataset", help="letters, digits, '.', '_' or '-'")
    upload = st.file_uploader(".npz with x_train, y_train, x_test, y_test (optional masks_train, masks_test, "
                              "class_names)", type=["npz"], max_upload_size=UPLOAD_MB, key="dataset_npz")
    added = st.form_submit_button("Add the dataset", type="primary")
if added:
    if not upload or not name:
        st.error("Give the dataset a name and an .npz file.")
    else:
        try:
            card = _staged(upload, ".npz", lambda path: add_dataset(name.strip(), path))
            st.success(f"Registered **{card['name']}**: {card['n_train']:,} train + {card['n_test']:,} test images of "
                       f"{card['height']}×{card['width']}×{card['channels']}, {len(card['class_names'])} classes.")
        except REFUSALS as exc:
            st.error(str(exc))

st.header("Add a model")
datasets = dataset_names()
outside = {c["name"]: c for c in list_models() if c.get("architecture", {}).get("source") == "import"}
with st.form("add_model", clear_on_submit=False):
    dataset = st.selectbox("Dataset it classifies", datasets, key="bring_dataset")
    model_name = st.text_input("Name", placeholder="my-model", key="bring_name")
    kind = st.radio("File", ["ONNX model", "safetensors weights for a registered architecture"], key="bring_kind",
                    horizontal=True)
    architecture = st.selectbox("Registered architecture (for safetensors)", ["", *outside], key="bring_arch",
                                help="a model registered from the command line by import path; its class is reused")
    model_file = st.file_uploader("Model file", type=["onnx", "safetensors"], max_upload_size=UPLOAD_MB,
                                  key="model_file")
    registered = st.form_submit_button("Add the model", type="primary")
if registered:
    try:
        if not model_file or not model_name:
            raise ValueError("Give the model a name and a file.")
        if kind == "ONNX model":
            card_path = _staged(model_file, ".onnx", lambda path: register_model(
                ModelSpec(model_name.strip(), dataset, onnx=path)))
        else:
            if architecture not in outside:
                raise ValueError("Pick the registered architecture these weights are for.")
            arch = outside[architecture]["architecture"]
            card_path = _staged(model_file, ".safetensors", lambda path: register_model(ModelSpec(
                model_name.strip(), dataset, import_path=arch["target"], kwargs=arch["kwargs"], weights=path,
                mean=arch["input"]["mean"], std=arch["input"]["std"])))
        st.success(f"Registered **{model_name.strip()}** for {dataset} ({' × '.join(map(str, input_shape(dataset)))} "
                   f"images); it is on the Models page and every page's model list.")
    except REFUSALS as exc:
        st.error(str(exc))
