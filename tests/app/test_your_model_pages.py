"""Every image page on a registered colour dataset and models from outside (a small network by import path,
trained normal and gradreg): colour images, the dataset's own class names, no digit uploads."""
import json

import pytest
from page_helpers import page, settle

from gradviz.data.adding import add_dataset
from gradviz.data.colour_digits import write_colour_folder
from gradviz.data.datasets import load_arrays
from gradviz.training.config import TrainConfig
from gradviz.training.loop import train_and_save


@pytest.fixture
def colour_pair(tmp_path):
    arrays = load_arrays("mnist")
    add_dataset("colour", write_colour_folder(tmp_path / "colour", arrays.test_x[:300], arrays.test_y[:300],
                                              {"train": slice(0, 200), "test": slice(200, 300)}))
    for defense, lam in (("normal", 0.0), ("gradreg", 1.0)):
        train_and_save(TrainConfig(dataset="colour", defense=defense, lam=lam, steps=3, batch_size=16, device="cpu",
                                   model="external_models:TinyNet", name=f"tiny-{defense}"), progress=False)
    return ["tiny-normal", "tiny-gradreg"]


def _on(name: str):
    at = page(name)
    settle(at.selectbox(key="dataset").set_value("colour").run())
    assert not at.exception, at.exception
    return at


def test_saliency_shows_colour_images_and_the_datasets_classes(colour_pair):
    at = _on("saliency")
    assert [r.options for r in at.radio if r.key == "image_source_sample"] == [["Test sample"]]  # no digit uploads
    assert at.multiselect(key="models_colour").value == colour_pair
    assert "digit-" in at.selectbox(key="class_colour").options[1]
    grid = at.get("plotly_chart")[0].proto.spec.replace(" ", "")
    assert '"type":"image"' in grid and grid.count('"type":"heatmap"') >= 2  # the colour input, then the maps
    assert not at.error, [e.value for e in at.error]
    at.selectbox(key="channels").set_value("sum").run()
    at.toggle(key="per_channel").set_value(True).run()
    assert not at.exception, at.exception
    titles = [a["text"] for a in json.loads(at.get("plotly_chart")[0].proto.spec)["layout"]["annotations"]]
    assert any("tiny-normal · R" in t for t in titles) and any("tiny-gradreg · B" in t for t in titles)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["attack_lab", "grids", "sanity", "interpretability", "robustness"])
def test_every_page_takes_the_registered_dataset_and_models(colour_pair, name):
    at = _on(name)
    assert not at.error, [e.value for e in at.error]


def test_the_models_page_lists_models_from_outside(colour_pair):
    at = page("models")
    assert not at.exception, at.exception
    shown = [df.value for df in at.dataframe]
    assert any(set(colour_pair) <= set(df.iloc[:, 0]) for df in shown)
