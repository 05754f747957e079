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
