"""Shared fixtures: a private cache and user-model folder per test session, tiny models and data."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def user_models(tmp_path, monkeypatch) -> Path:
    """Never write into the real user model or checkpoint folders."""
    folder = tmp_path / "user-models"
    monkeypatch.setenv("GRADVIZ_USER_MODELS", str(folder))
    monkeypatch.setenv("GRADVIZ_CHECKPOINTS", str(tmp_path / "checkpoints"))
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

