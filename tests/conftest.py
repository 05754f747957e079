"""Shared fixtures: a private cache and user-model folder per test session, tiny models and data."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(items) -> None:
    """A test run on both study backends needs the PostgreSQL server in its postgresql variant only."""
    for item in items:
        if "postgresql" in item.nodeid:
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(autouse=True)
def user_models(tmp_path, monkeypatch) -> Path:
    """Never write into the real home, user model, dataset, checkpoint or carried-run folders."""
    folder = tmp_path / "user-models"
    monkeypatch.setenv("GRADVIZ_USER_MODELS", str(folder))
    monkeypatch.setenv("GRADVIZ_CHECKPOINTS", str(tmp_path / "checkpoints"))
    monkeypatch.setenv("GRADVIZ_CARRY", str(tmp_path / "carry"))
    monkeypatch.setenv("GRADVIZ_USER_DATASETS", str(tmp_path / "user-datasets"))
    monkeypatch.setenv("GRADVIZ_HOME", str(tmp_path / "home"))  # annotations, the study's SQLite file
    monkeypatch.setenv("GRADVIZ_DEBUG", "1")  # an app page's unexpected error fails its test (app.run)
    return folder


@pytest.fixture(scope="session")
def mnist_test() -> tuple[torch.Tensor, torch.Tensor]:
    from gradviz import load_dataset

    return load_dataset("mnist", "test")


@pytest.fixture
def tiny_train(mnist_test):
    """512 real digits: enough for a few training steps."""
    x, y = mnist_test
    return x[:512], y[:512]



@pytest.fixture(scope="session")
def trained_pairs(tmp_path_factory) -> Path:
    """Where `saved_pair` keeps each pair it trained, so that tests asking for the same pair share one training."""
    return tmp_path_factory.mktemp("trained-pairs")


@pytest.fixture
def saved_pair(user_models, tiny_train, trained_pairs):
    """A factory: a normal and a gradreg (λ 1) model trained briefly on 512 digits and saved as the user models
    PREFIX-normal and PREFIX-gradreg; returns [normal, gradreg]. A pair is trained once per test session (the same
    settings give the same models) and copied into each test's own user-model folder."""
    from gradviz.nets.store import save_model
    from gradviz.training.config import TrainConfig
    from gradviz.training.loop import train_model

    def make(prefix: str, steps: int = 20, width: int = 8) -> list[str]:
        kept = trained_pairs / f"{prefix}-{steps}-{width}"
        if not kept.is_dir():
            for defense, lam in (("normal", 0.0), ("gradreg", 1.0)):
                model, card = train_model(TrainConfig(defense=defense, lam=lam, steps=steps, batch_size=64,
                                                      width=width, device="cpu", name=f"{prefix}-{defense}"),
                                          tiny_train, progress=False)
                save_model(model, card, kept)
        user_models.mkdir(parents=True, exist_ok=True)
        for file in kept.iterdir():
            shutil.copy2(file, user_models / file.name)
        return [f"{prefix}-normal", f"{prefix}-gradreg"]
    return make
