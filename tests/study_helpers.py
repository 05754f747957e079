"""Synthetic stimulus sets and database URLs for the study tests."""
from __future__ import annotations

import json
import os

import pytest
import torch
from sqlalchemy import create_engine, text

from gradviz.data.images import to_png16
from gradviz.study.db import make_engine, set_setting
from gradviz.study.stimulus_sets import store_stimuli

MODELS = ["m-normal", "m-distilled", "m-advtrain", "m-gradreg"]


def synthetic_rows(n_items: int = 12, models=MODELS, attacks=("itgsm",), n_attention: int = 3,
                   set_id: str = "synthetic") -> list[dict]:
    png = to_png16(torch.zeros(28, 28))
    rows = []
    for i in range(n_items):
        true, target = i % 10, (i + 1) % 10
        for m in models:
            for a in attacks:
                condition = f"{m}|{a}|0.3"
                rows.append({"stimulus_id": f"{set_id}-{i}-{m}-{a}", "set_id": set_id, "item_id": f"{i}>{target}",
                             "condition": condition, "kind": "adversarial", "source_model": m,
                             "source_sha256": "0" * 64, "attack": a, "eps": 0.3, "true_class": true,
                             "target_class": target, "l2": 1.0 + i / 10, "ssim": 0.9 - i / 100, "png": png,
                             "provenance": json.dumps({"source_model": m})})
    for k in range(n_attention):
        rows.append({"stimulus_id": f"{set_id}-attention-{k}", "set_id": set_id, "item_id": f"attention-{k}",
                     "condition": "attention", "kind": "attention", "source_model": None, "source_sha256": None,
                     "attack": None, "eps": 0.0, "true_class": k, "target_class": None, "l2": 0.0, "ssim": 1.0,
                     "png": png, "provenance": "{}"})
    return rows


def install_set(engine, rows, open_unregistered: bool = True) -> str:
    """Store and activate a stimulus set; open to participants without a pre-registration (a pilot), unless
    `open_unregistered` is False."""
    store_stimuli(engine, rows)
    set_setting(engine, "active_set", rows[0]["set_id"])
    set_setting(engine, "open_unregistered", "1" if open_unregistered else "0")
    return rows[0]["set_id"]


def sqlite_study(tmp_path, monkeypatch, completion_code: str):
    """A study database file the pages use (GRADVIZ_DB_URL), holding a small open synthetic set and a code."""
    url = f"sqlite:///{tmp_path / 'study.sqlite'}"
    monkeypatch.setenv("GRADVIZ_DB_URL", url)
    engine = make_engine(url)
    install_set(engine, synthetic_rows(n_items=4, n_attention=1))
    set_setting(engine, "completion_code", completion_code)
    return engine


def fresh_postgres(url: str) -> str:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return url


def database_urls(tmp_path) -> dict[str, str | None]:
    return {"sqlite": f"sqlite:///{tmp_path / 'study.sqlite'}", "postgresql": os.environ.get("GRADVIZ_TEST_PG_URL")}


def engine_for_backend(backend: str, tmp_path):
    url = database_urls(tmp_path)[backend]
    if url is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI must provide GRADVIZ_TEST_PG_URL (a PostgreSQL server started by .ci/run)")
        pytest.skip("no PostgreSQL server: set GRADVIZ_TEST_PG_URL")
    if backend == "postgresql":
        fresh_postgres(url)
    return make_engine(url), url
