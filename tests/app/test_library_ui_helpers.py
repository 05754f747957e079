"""Library helpers behind the dashboard: saliency normalisation, upload preprocessing, background jobs."""
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from gradviz.attribution.methods import REGISTRY, get_method, normalise, saliency_map
from gradviz.data.images import ImageError, prepare_digit
from gradviz.jobs import JobRunner
from gradviz.nets.architecture import PaperCNN


def test_shared_scale_keeps_relative_magnitudes():
    big, small = np.array([[4.0, -2.0]]), np.array([[0.4, 0.1]])
    shared, scales = normalise([big, small], shared=True)
    assert scales == [4.0, 4.0]
    assert np.allclose(shared[0], [[1.0, -0.5]]) and np.allclose(shared[1], [[0.1, 0.025]])
    own, scales = normalise([big, small], shared=False)
    assert np.allclose(own[1], [[1.0, 0.25]]) and scales == [4.0, 0.4]


def test_absolute_and_zero_maps():
    out, _ = normalise([np.array([[-3.0, 1.0]]), np.zeros((1, 2))], shared=False, signed=False)
    assert np.allclose(out[0], [[1.0, 1 / 3]]) and np.all(out[1] == 0)
    clipped, scales = normalise([np.arange(101.0)], percentile=50)
    assert scales == [50.0] and clipped[0].max() == 1.0


@pytest.mark.parametrize("method", list(REGISTRY))
def test_every_saliency_method_gives_a_map(method):
    torch.manual_seed(0)
    model = PaperCNN(width=8).eval()
    x, y = torch.rand(3, 1, 28, 28), torch.tensor([1, 2, 3])
    out = saliency_map(model, x, method, y)
    assert out.shape == (3, 28, 28) and torch.isfinite(out).all() and out.abs().sum() > 0
    entry = get_method(method)
    other = saliency_map(model, x, method, y, cls=torch.tensor([7, 7, 7]))
    assert torch.equal(out, other) != entry.takes_class  # a method that takes a class explains the one asked for


def test_saliency_settings_are_checked_and_change_the_map():
    model = PaperCNN(width=8).eval()
    x, y = torch.rand(2, 1, 28, 28), torch.tensor([1, 2])
    coarse = saliency_map(model, x, "integrated-gradients", y, n_steps=4)
    assert not torch.allclose(coarse, saliency_map(model, x, "integrated-gradients", y))  # 32 steps by default
    with pytest.raises(ValueError, match="integrated-gradients: n_steps must be between 4 and 256"):
        saliency_map(model, x, "integrated-gradients", y, n_steps=1)
    with pytest.raises(ValueError, match="saliency has no setting n_steps"):
        saliency_map(model, x, "saliency", y, n_steps=8)
    with pytest.raises(ValueError, match="unknown saliency method 'lrp'; choose from gradient-logsum"):
        get_method("lrp")


def _encode(image: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kw)
    return buffer.getvalue()


def _digit(mode: str, size=(120, 160), ink=0, paper=255) -> Image.Image:
    image = Image.new("L", size, paper)
    ImageDraw.Draw(image).line([(size[0] // 2, 10), (size[0] // 2, size[1] - 10)], fill=ink, width=12)
    return image.convert(mode)


@pytest.mark.parametrize("data", [
    _encode(_digit("RGB")), _encode(_digit("RGBA")), _encode(_digit("P")), _encode(_digit("L"), "JPEG"),
    _encode(_digit("L", ink=255, paper=0)), _encode(_digit("L", size=(3000, 2000))),
    _encode(Image.fromarray(np.asarray(_digit("L"), dtype=np.uint16) * 257).convert("I;16")),
    _encode(_digit("RGB"), "GIF", save_all=True, append_images=[_digit("RGB")]),
    _encode(_digit("CMYK"), "TIFF"), _encode(_digit("RGB"), "WEBP"),
])
def test_uploads_of_any_kind_become_a_centred_digit(data):
    x, steps = prepare_digit(data)
    assert x.shape == (1, 1, 28, 28) and 0 <= float(x.min()) and float(x.max()) <= 1
    assert steps[-1][0].startswith("28×28")
    ys, xs = np.nonzero(x[0, 0].numpy() > 0.3)
    assert ys.max() - ys.min() <= 20 and xs.max() - xs.min() <= 20  # ink fitted into 20×20, as MNIST is
    assert abs(xs.mean() - 13.5) < 3


def test_transparent_ink_on_nothing_is_composited_on_white():
    image = Image.new("RGBA", (80, 80), (0, 0, 0, 0))
    ImageDraw.Draw(image).ellipse([20, 10, 60, 70], outline=(0, 0, 0, 255), width=8)
    x, steps = prepare_digit(_encode(image))
    assert "inverted" in [s[0] for s in steps] and float(x.max()) > 0.9


@pytest.mark.parametrize("data,message", [
    (b"", "empty"), (b"%PDF-1.4 not an image", "not an image"), (_encode(_digit("L"))[:60], "damaged"),
    (_encode(Image.new("L", (50, 50), 255)), "blank"), (b"x" * (11 * 1024 * 1024), "limit"),
])
def test_bad_uploads_get_a_clear_message(data, message):
    with pytest.raises(ImageError, match=message):
        prepare_digit(data)


def test_decompression_bomb_is_refused():
    bomb = _encode(Image.new("1", (20000, 20000)))  # 400 Mpixel, tiny file
    with pytest.raises(ImageError, match="too large: 400,000,000 pixels; the limit is 40,000,000"):
        prepare_digit(bomb)
    with pytest.raises(ImageError, match="too large: 7000×7000 pixels"):
        prepare_digit(_encode(Image.new("1", (7000, 7000))))  # under Pillow's limit, over ours


def test_jobs_report_progress_and_cancel():
    runner = JobRunner()

    def work(job):
        for i in range(1, 101):
            if job.cancelled:
                raise RuntimeError("cancelled")
            job.report(i, 100, "step", loss=1.0 / i)
        return "finished"

    ok = runner.wait(runner.submit("ok", work), timeout=30)
    assert ok.state == "done" and ok.result == "finished" and ok.fraction == 1.0 and len(ok.snapshot()) == 100

    def stuck(job):
        while not job.cancelled:
            job.report(1, 2)
        raise RuntimeError("stopped by user")

    handle = runner.submit("stuck", stuck)
    handle.cancel()
    runner.wait(handle, timeout=30)
    assert handle.state == "cancelled" and "stopped" in handle.error

    failing = runner.wait(runner.submit("bad", lambda job: 1 / 0), timeout=30)
    assert failing.state == "failed" and "ZeroDivisionError" in failing.error


@pytest.mark.parametrize("method", list(REGISTRY))
def test_every_saliency_method_from_the_command_line(method, tmp_path, capsys):
    from gradviz.cli.main import main

    assert main(["saliency", "--models", "mnist-normal,mnist-gradreg", "--method", method, "--index", "3",
                 "--out", str(tmp_path)]) == 0
    records = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("*.json"))]
    assert [r["model"] for r in records] == ["mnist-gradreg", "mnist-normal"] and records[0]["label"] == 0
    assert records[0]["scale"] == records[1]["scale"] > 0  # one shared scale by default
    assert len(list(tmp_path.glob("*.png"))) == 2 and "predicts" in capsys.readouterr().out


def test_the_saliency_command_refuses_settings_of_another_method(tmp_path, capsys):
    from gradviz.cli.main import main

    assert main(["saliency", "--method", "saliency", "--param", "smoothgrad.samples=4", "--out", str(tmp_path)]) == 2
    assert "--param names smoothgrad, but the method is saliency" in capsys.readouterr().err


def test_an_unexpected_page_error_is_one_line_with_an_id_that_the_log_holds(monkeypatch, caplog):
    import pytest

    from app_pages.errors import run_page

    class Broken:
        title = "Broken"

        def run(self):
            raise KeyError("a bug")

    monkeypatch.delenv("GRADVIZ_DEBUG", raising=False)
    error_id = run_page(Broken())
    assert len(error_id) == 8 and f"gradviz error {error_id} on page 'Broken'" in caplog.text
    assert "KeyError: 'a bug'" in caplog.text
    monkeypatch.setenv("GRADVIZ_DEBUG", "1")
    with pytest.raises(KeyError):
        run_page(Broken())
