"""Adopting a finished pair into the zoo: stored in float16, cards carrying the before/after numbers, refusals
that write nothing."""
import json

import pytest
from safetensors import safe_open

from gradviz.experiments import adopt
from gradviz.experiments.adopt import adopt_pair
from gradviz.nets.store import load_model

pytestmark = [pytest.mark.slow]


@pytest.fixture
def pair(saved_pair):
    normal, gradreg = saved_pair("ad", steps=150, width=16)  # fitted past chance: fewer borderline digits
    return gradreg, normal


def test_the_pair_is_stored_in_float16_with_the_numbers_before_and_after(pair, tmp_path):
    target, source = pair
    check = adopt_pair(target, source, zoo_dir=tmp_path / "zoo", n=500)
    assert abs(check["float32"] - check["stored"]) < adopt.HEADLINE_TOLERANCE and check["images"] == 500
    for name in pair:
        card = json.loads((tmp_path / "zoo" / f"{name}.json").read_text())
        with safe_open(tmp_path / "zoo" / card["weights_file"], "pt") as f:
            assert f.get_tensor("features.0.weight").dtype.is_floating_point
            assert str(f.get_tensor("features.0.weight").dtype) == "torch.float16"
        assert card["stored_dtype"] == "float16" and card["zoo_role"] == "paper-scale"
        assert card["clean_test_accuracy"] == check["clean"][name][1]
        assert card["float32_clean_test_accuracy"] == check["clean"][name][0]
    target_card = json.loads((tmp_path / "zoo" / f"{target}.json").read_text())
    assert target_card["rounding_check"]["stored"] == check["stored"] and target_card["transfer_source"] == source
    model, _ = load_model(tmp_path / "zoo" / f"{target}.json")
    assert next(model.parameters()).dtype.is_floating_point and str(next(model.parameters()).dtype) == "torch.float32"


def test_refusals_write_nothing(pair, tmp_path, monkeypatch):
    target, source = pair
    with pytest.raises(ValueError, match="lower precision"):
        adopt_pair(target, source, stored_dtype="float32", zoo_dir=tmp_path / "zoo")
    tolerance = adopt.HEADLINE_TOLERANCE
    monkeypatch.setattr(adopt, "HEADLINE_TOLERANCE", 0.0)
    with pytest.raises(ValueError, match="rounding changes too much"):
        adopt_pair(target, source, zoo_dir=tmp_path / "zoo", n=200)
    assert not (tmp_path / "zoo").exists()
    monkeypatch.setattr(adopt, "HEADLINE_TOLERANCE", tolerance)
    adopt_pair(target, source, zoo_dir=tmp_path / "zoo", n=1000)  # on 200 images one flipped image is the tolerance
    with pytest.raises(ValueError, match="already in the zoo"):
        adopt_pair(target, source, zoo_dir=tmp_path / "zoo", n=200)


def test_the_cli_reports_the_check_and_errors_cleanly(pair, tmp_path, capsys):
    from gradviz.cli.main import main

    assert main(["zoo", "adopt", *pair, "--out", str(tmp_path / "zoo")]) == 0
    assert "ad-gradreg: clean" in capsys.readouterr().out
    assert main(["zoo", "adopt", "no-such-model", pair[1], "--out", str(tmp_path / "zoo")]) == 2


def test_a_carried_pair_is_compared_with_its_float32_originals_number(pair, tmp_path, user_models):
    """A pair carried between machines is float16 already: its card's float32 clean accuracy is the original's,
    so the adopted card keeps it (re-measuring the rounded weights would compare float16 with itself)."""
    target, source = pair
    for name in pair:
        path = user_models / f"{name}.json"
        card = json.loads(path.read_text())
        path.write_text(json.dumps({**card, "stored_dtype": "float16", "float32_clean_test_accuracy": 0.4321}))
    check = adopt_pair(target, source, zoo_dir=tmp_path / "zoo", n=500)  # a subset: the card's number is not for it
    assert check["clean"][target][0] != 0.4321 and check["rounded_before"] == "float16"
    all_zoo = tmp_path / "zoo-all"
    with pytest.raises(ValueError, match="rounding changes too much"):  # all images: 0.4321 is what it is held to
        adopt_pair(target, source, zoo_dir=all_zoo)
    assert not all_zoo.exists()
