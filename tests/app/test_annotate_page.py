"""The Annotate page without a browser (the drawing itself is the browser test's): images ranked for annotation,
annotations imported and counted, a fine-tune started from them in the background, before and after compared."""
import numpy as np
from page_helpers import page

from gradviz.data.annotations import annotation_path, from_generated_masks, load_annotations, save_annotations
from gradviz.data.datasets import load_masks


def _on_decoy():
    at = page("annotate")
    at.selectbox(key="dataset").set_value("decoy-mnist").run()
    assert not at.exception, at.exception
    at.selectbox(key="annotate_model_decoy-mnist").set_value("decoy-mnist-normal").run()
    assert not at.exception, at.exception
    return at


def test_the_page_opens_on_the_image_most_off_the_object_and_steps_through(tmp_path):
    at = _on_decoy()
    assert at.metric[0].value == "0"
    first = next(m.value for m in at.markdown if "Training image" in m.value)
    at.button[1].click().run()  # Next image
    second = next(m.value for m in at.markdown if "Training image" in m.value)
    assert first != second and "2 of 300" in second
    at.radio(key="annotate_order").set_value("confident").run()
    assert not at.exception, at.exception


def test_imported_annotations_are_counted_and_fine_tune_a_model_compared_before_and_after(tmp_path):
    from app_pages.common import job_runner

    masks = load_masks("decoy-mnist", "train")[:300, 0].numpy()
    path = save_annotations(from_generated_masks("decoy-mnist", masks, np.arange(0, 40, 2)), tmp_path / "a.npz")
    at = _on_decoy()
    at.file_uploader(key="annotate_import").upload("a.npz", path.read_bytes(), "application/octet-stream").run()
    next(b for b in at.button if b.label == "Add the imported annotations").click().run()
    assert not at.exception, at.exception
    assert at.metric[0].value == "20" and any("20 annotations added" in s.value for s in at.success)
    assert len(load_annotations(annotation_path("decoy-mnist", "decoy-mnist-normal"))) == 20
    at.selectbox(key="annotate_defense").set_value("counterexamples").run()
    at.number_input(key="annotate_steps").set_value(20)
    next(b for b in at.button if b.label.startswith("Fine-tune into")).click().run()
    assert not at.exception, at.exception
    job = job_runner().jobs[at.session_state["annotate_job"]]
    job_runner().wait(job, timeout=300)
    assert job.state == "done", job.error
    at.run()
    assert not at.exception, at.exception
    assert at.selectbox(key="annotate_after").value == job.result == "decoy-mnist-normal-counterexamples-annotated"
    table = at.dataframe[-1].value
    assert list(table.model) == ["decoy-mnist-normal", job.result]
    assert any(f"**{job.result}**" in m.value and "accuracy without the shortcut" in m.value for m in at.markdown)
    assert table["share of |gradient| on the marked region"].between(0, 1).all()


def test_a_bad_import_is_refused_with_its_reason(tmp_path):
    at = _on_decoy()
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    at.file_uploader(key="annotate_import").upload("bad.npz", b"not a zip", "application/octet-stream").run()
    next(b for b in at.button if b.label == "Add the imported annotations").click().run()
    assert any("bad.npz: not an annotation file" in e.value for e in at.error)
    assert at.metric[0].value == "0"


def test_the_committed_annotation_curve_answers_and_plots_for_its_dataset():
    from gradviz.evaluation.report.annotation_curve import read_curve
    from gradviz.paths import COMMITTED_RESULTS

    record = read_curve(COMMITTED_RESULTS / "decoy-mnist-annotation-curve")
    at = _on_decoy()
    answer = next(m.value for m in at.markdown if m.value.startswith("On decoy-mnist without the shortcut"))
    assert f"reaches {next(e for e in record['summary'] if e['curve'] == 'normal')['shortcut_free_accuracy']:.3f}" in answer
    assert len([c for c in at.get("plotly_chart") if "how many annotations does it take" in c.proto.spec]) == 1
    at.radio(key="annotate_curve_metric").set_value("wrong_region_share").run()
    assert not at.exception, at.exception
    at.selectbox(key="dataset").set_value("mnist").run()  # no curve for a dataset without masks: no section
    assert not any(m.value.startswith("On mnist without") for m in at.markdown)
