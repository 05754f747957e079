"""The pages on the ground-truth datasets: Decoy MNIST's Clever Hans demo, mask outlines, Block MNIST's 56×28
images and two classes wherever MNIST goes."""
import pytest
from page_helpers import page, settle


def _table(at):
    """The ground-truth table under the maps (the one with a `predicts` column)."""
    return next(df.value for df in at.dataframe if "predicts" in df.value.columns)


def _on(name: str, dataset: str):
    at = page(name)
    settle(at.selectbox(key="dataset").set_value(dataset).run())
    assert not at.exception, at.exception
    return at


def test_decoy_demo_compares_normal_rrr_and_gradreg_with_the_swatch_outlined():
    at = _on("saliency", "decoy-mnist")
    assert [r.options for r in at.radio if r.key == "image_source_sample"] == [["Test sample"]]  # no uploads
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert at.multiselect(key="models_decoy-mnist").value == ["decoy-mnist-normal", "decoy-mnist-rrr",
                                                              "decoy-mnist-gradreg"]
    assert at.toggle(key="outline").value
    table = _table(at)
    assert list(table["model"]) == at.multiselect(key="models_decoy-mnist").value
    assert {"predicts", "follows the swatch", "share of |map| on the swatch"} <= set(table.columns)
    assert table["share of |map| on the swatch"].between(0, 1).all()
    assert any("The swatch's grey codes class" in c.value for c in at.caption)
    grid = at.get("plotly_chart")[0].proto.spec
    assert '"type":"rect"' in grid.replace(" ", "")  # the outline
    at.toggle(key="outline").set_value(False).run()
    assert not at.exception and '"type":"rect"' not in at.get("plotly_chart")[0].proto.spec.replace(" ", "")


def test_block_mnist_saliency_shows_the_signal_block_share():
    at = _on("saliency", "block-mnist")
    table = _table(at)
    assert set(table["predicts"]) <= {"0", "1"} and "share of |map| on the signal block" in table.columns
    at.slider(key="index_block-mnist_any").set_value(3).run()
    assert not at.exception and any("#3" in c.value for c in at.caption)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["attack_lab", "grids", "sanity", "interpretability", "robustness"])
def test_every_image_page_works_on_block_mnist(name):
    at = _on(name, "block-mnist")
    assert not at.error, [e.value for e in at.error]
