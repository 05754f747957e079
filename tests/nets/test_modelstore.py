import json

import pytest
import torch

from gradviz import list_models, load_model
from gradviz.nets.architecture import PaperCNN
from gradviz.nets.cards import ModelFileError
from gradviz.nets.store import save_model


def _card(name="tiny"):
    return {"name": name, "dataset": "mnist", "defense": "normal", "clean_test_accuracy": 0.5,
            "architecture": {"name": "PaperCNN", "width": 8, "num_classes": 10}}


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = PaperCNN(width=8).eval()
    return model, save_model(model, _card(), tmp_path)


def test_round_trip_gives_the_same_outputs(saved):
    model, card_path = saved
    loaded, card = load_model(card_path)
    x = torch.rand(4, 1, 28, 28)
    assert torch.equal(model(x), loaded(x)) and not loaded.training
    assert len(card["sha256"]) == 64 and card["weights_file"] == "tiny.safetensors"
    assert not list(card_path.parent.glob("*.tmp"))


def test_float16_storage_halves_the_file_and_loads_as_float32(saved, tmp_path):
    model, card_path = saved
    half = save_model(model, {**_card("half"), "stored_dtype": "float16"}, tmp_path)
    loaded, card = load_model(half)
    assert card["size_bytes"] < 0.55 * json.loads(card_path.read_text())["size_bytes"]
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    weight = model.features[0].weight
    assert torch.equal(loaded.features[0].weight, weight.half().float())  # rounded once, nothing else
    x = torch.rand(32, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(model(x), loaded(x), atol=1e-2)
    with pytest.raises(ValueError, match="stored_dtype"):
        save_model(model, {**_card("bad"), "stored_dtype": "int8"}, tmp_path)


def test_channels_last_weights_give_the_same_outputs_and_still_save(saved, tmp_path):
    from gradviz.nets.architecture import channels_last
    model, card_path = saved
    fast, _ = load_model(card_path)
    channels_last(fast)
    assert fast.features[0].weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.rand(16, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(model(x), fast(x), atol=1e-5)
    again, _ = load_model(save_model(fast, _card("again"), tmp_path / "again"))
    with torch.no_grad():
        assert torch.allclose(model(x), again(x), atol=1e-5)


def test_load_by_name_from_the_user_folder(user_models):
    save_model(PaperCNN(width=8), _card("mine"), user_models)
    names = {c["name"]: c["origin"] for c in list_models()}
    assert names["mine"] == "user"
    assert load_model("mine")[1]["name"] == "mine"


def test_unknown_name(user_models):
    with pytest.raises(ModelFileError, match="no model named 'nope'"):
        load_model("nope")


def test_tampered_weights_are_refused(saved):
    _, card_path = saved
    weights = card_path.with_suffix(".safetensors")
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="sha256 does not match"):
        load_model(card_path)


def test_pickle_is_refused_even_with_a_matching_hash(saved):
    _, card_path = saved
    weights = card_path.with_suffix(".safetensors")
    torch.save(PaperCNN(width=8).state_dict(), weights)  # a zip/pickle file under the safetensors name
    card = json.loads(card_path.read_text())
    import hashlib
    card["sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelFileError, match="refuses to unpickle"):
        load_model(card_path)


def test_non_safetensors_paths_are_refused(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({}, path)
    with pytest.raises(ModelFileError, match="only safetensors"):
        load_model(path)


def test_shape_mismatch_is_reported(saved):
    _, card_path = saved
    card = json.loads(card_path.read_text())
    card["architecture"]["width"] = 16
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelFileError, match="do not match architecture"):
        load_model(card_path)


def test_garbage_safetensors_file(saved):
    _, card_path = saved
    weights = card_path.with_suffix(".safetensors")
    weights.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    card = json.loads(card_path.read_text())
    import hashlib
    card["sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelFileError, match="not a valid safetensors"):
        load_model(card_path)
