"""AppTest checks of every page of the dashboard."""
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from gradviz.architecture import PaperCNN
from gradviz.modelstore import save_model

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def app():
    return AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)


def test_models_page_lists_the_zoo_and_user_models(app, user_models):
    card = {"name": "my-own", "dataset": "mnist", "defense": "gradreg", "lam": 1.0, "clean_test_accuracy": 0.9,
            "architecture": {"name": "PaperCNN", "width": 8, "num_classes": 10}}
    save_model(PaperCNN(width=8), card, user_models)
    app.run()
    assert not app.exception
    frames = [df.value for df in app.dataframe]
    names = {n for f in frames for n in f["name"]}
    assert "my-own" in names
    assert {"mnist-normal", "mnist-gradreg"} <= names
    assert any("trained by you" in c.value for c in app.caption)
