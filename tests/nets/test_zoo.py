"""The committed zoo: every model loads through gradviz.load_model and really has the accuracy its card claims."""
import pytest

from gradviz import list_models, load_dataset, load_model
from gradviz.data.datasets import dataset_hashes
from gradviz.paths import ZOO_DIR
from gradviz.training.defenses import DEFENSES, MASKED
from gradviz.training.loop import accuracy

pytestmark = [pytest.mark.slow]

# Clean accuracy floors; Decoy MNIST's test swatches lie, so a model that reads them may score low there
# The decoy models learned the swatch on purpose: their decoy test accuracy is whatever the shortcut leaves.
FLOOR = {"mnist": 0.98, "fashion-mnist": 0.88, "decoy-mnist": 0.0, "decoy-fashion-mnist": 0.0, "block-mnist": 0.98}
GROUND_TRUTH_ZOO = {("decoy-mnist", "normal"), ("decoy-mnist", "gradreg"), ("decoy-mnist", "rrr"),
                    ("block-mnist", "normal"), ("block-mnist", "gradreg"), ("block-mnist", "advtrain")}
ZOO = [c for c in list_models([ZOO_DIR])]


def test_the_zoo_has_every_defense_for_both_datasets_the_ground_truth_models_and_fits_in_40_mb():
    have = {(c["dataset"], c["defense"]) for c in ZOO}
    assert {(d, f) for d in ("mnist", "fashion-mnist") for f in DEFENSES if f not in MASKED} <= have
    assert GROUND_TRUTH_ZOO <= have
    assert sum(p.stat().st_size for p in ZOO_DIR.iterdir()) < 40_000_000


@pytest.mark.parametrize("card", ZOO, ids=[c["name"] for c in ZOO])
def test_zoo_model_matches_its_card(card):
    model, loaded = load_model(card["name"])
    x, y = load_dataset(card["dataset"], "test")
    measured = accuracy(model, x, y)
    assert measured == pytest.approx(card["clean_test_accuracy"], abs=1e-3)
    assert measured >= FLOOR[card["dataset"]], f"{card['name']}: {measured:.4f}"
    assert loaded["data_sha256"] == dataset_hashes(card["dataset"])  # the official files: no test leakage
    assert loaded["versions"]["torch"] and loaded["train_seconds"] > 0


ADOPTED = [c for c in ZOO if "rounding_check" in c]


@pytest.mark.parametrize("card", ADOPTED, ids=[c["name"] for c in ADOPTED])
def test_an_adopted_models_rounding_changes_nothing_that_matters(card):
    """The float16 file gives the headline its card recorded, within the tolerance of the float32 original."""
    from gradviz.experiments.adopt import CLEAN_TOLERANCE, HEADLINE_TOLERANCE, transfer_accuracy

    check = card["rounding_check"]
    (target, _), (source, _) = load_model(card["name"]), load_model(check["source"])
    x, y = load_dataset(card["dataset"], "test")
    x, y = x[:check["images"]], y[:check["images"]]
    # Another CPU's kernels flip FGSM's sign wherever the source's gradient is ~0: mnist-gradreg-paper recorded 0.5954
    # (an AMD EPYC, 2026-12-02) and measures 0.5922 on an AVX2-only AMD EPYC (2026-12-06, 1 or 2 threads, any
    # batch). Across machines the headline holds to the rounding tolerance, not to the last digit.
    assert transfer_accuracy(source, target, x, y, check["eps"]) == pytest.approx(check["stored"],
                                                                                   abs=HEADLINE_TOLERANCE)
    assert abs(check["stored"] - check["float32"]) < HEADLINE_TOLERANCE
    assert abs(card["clean_test_accuracy"] - card["float32_clean_test_accuracy"]) < CLEAN_TOLERANCE
