"""Progress in logs: plain lines, not a redrawn bar's carriage returns."""
from __future__ import annotations

from gradviz.progress import LogLines, progress_bar


def test_a_log_gets_plain_lines_with_the_unit_and_what_is_left(capsys):
    bar = progress_bar(3, 0, "evaluate", True, unit="block")  # stderr is captured: not a terminal
    assert isinstance(bar, LogLines)
    bar.set_postfix_str("mnist-normal fgsm")
    for _ in range(3):
        bar.update()
    bar.close()
    err = capsys.readouterr().err
    assert "\r" not in err
    assert len(err.splitlines()) == 1  # within the 30 s interval only the last block prints
    assert err.startswith("evaluate: block 3/3 (100%)") and "blocks/s" in err and err.rstrip().endswith(
        "mnist-normal fgsm")


def test_training_postfix_is_written_as_key_value_pairs(capsys):
    bar = LogLines(2, 1, "gradreg", interval=0.0)
    bar.set_postfix({"loss": 0.5, "acc": 0.9})
    bar.update()
    err = capsys.readouterr().err
    assert err.startswith("gradreg: step 2/2 (100%)") and err.rstrip().endswith("loss=0.5 acc=0.9")


def test_disabled_progress_prints_nothing(capsys):
    bar = progress_bar(2, 0, "evaluate", False)
    bar.update(2)
    bar.close()
    assert capsys.readouterr().err == ""


def test_news_from_inside_a_long_unit_is_printed_without_finishing_it(capsys):
    bar = LogLines(4, 0, "evaluate", unit="block", interval=0.0)
    bar.set_postfix_str("mnist-gradreg autoattack ε=0.1: 250/1000 images", refresh=True)
    err = capsys.readouterr().err
    assert "block 0/4" in err and "250/1000 images" in err and "estimating" in err
    bar.set_postfix_str("quiet", refresh=False)
    assert capsys.readouterr().err == ""


def test_a_grid_estimate_stays_steady_when_each_model_stops_early(monkeypatch):
    """JSMA on 4 models: each model's part has a budget of 100 steps but ends after 20 (10 s). A step-based estimate
    says hundreds of seconds, then drops as each model ends; once one model has finished, this one says 10 s for
    each model still to come."""
    import gradviz.progress as progress

    now = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    estimate = progress.PartsEstimate(4, "model")
    now[0] = 5.0
    assert estimate.describe(10, 400, "a").endswith("at most ~195 s left")  # nothing finished: the bound
    lefts = []
    for k, name in enumerate("bcd", start=1):
        now[0] = 10.0 * k  # the next model's first step: the one before took 10 s
        estimate.describe(k * 100 + 1, 400, name)
        now[0] = 10.0 * k + 5  # halfway through it
        text = estimate.describe(k * 100 + 10, 400, name)
        assert text.startswith(f"model {k + 1} of 4") and "finished models took 10 s each" in text
        lefts.append(float(text.split("~")[1].split(" s left")[0]))
    assert lefts == [25.0, 15.0, 5.0]  # 10 s a model still to come, less the half done of the current one
