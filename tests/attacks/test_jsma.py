"""JSMA checked against its definition: pixel budget γ, changes of size θ, stopping at the target."""
import pytest
import torch

from gradviz.attacks.jsma import jsma
from gradviz.nets.store import load_model


@pytest.fixture(scope="module")
def normal():
    return load_model("mnist-normal")[0]


@pytest.fixture(scope="module")
def attacked(normal, mnist_test):
    x, y = mnist_test[0][:6], mnist_test[1][:6]
    target = (y + 1) % 10
    return x, target, jsma(normal, x, target, theta=1.0, gamma=0.25)


def test_jsma_reaches_the_target_within_its_pixel_budget(normal, attacked):
    x, target, result = attacked
    changed = (result.images != x).flatten(1)
    assert torch.equal(changed.sum(1), result.pixels_changed)
    assert (result.pixels_changed <= int(0.25 * 784)).all()
    assert torch.equal(result.pixels_changed, 2 * result.iterations)  # one pair per iteration
    assert torch.equal(result.images[changed.view_as(x)], torch.ones(int(changed.sum())))  # each raised by θ = 1
    with torch.no_grad():
        assert torch.equal(normal(result.images).argmax(1) == target, result.success)
    assert result.success.float().mean() >= 0.5  # the committed normal model falls on all of the first 40


def test_jsma_stops_as_soon_as_the_target_is_reached(normal, attacked):
    x, target, result = attacked
    i = int(result.success.nonzero()[0])
    short = jsma(normal, x[i:i + 1], target[i:i + 1], gamma=(int(result.pixels_changed[i]) - 2) / 784 + 1e-6)
    assert not short.success[0]  # one pair fewer does not reach the target: it stopped at the first success
    assert int(short.pixels_changed[0]) == int(result.pixels_changed[i]) - 2  # the same pairs, but the last
    done = jsma(normal, result.images[i:i + 1], target[i:i + 1])
    assert int(done.pixels_changed[0]) == 0 and torch.equal(done.images, result.images[i:i + 1])


def test_jsma_lowers_pixels_with_negative_theta_and_refuses_bad_settings(normal, mnist_test):
    x, y = mnist_test[0][:2], mnist_test[1][:2]
    result = jsma(normal, x, (y + 3) % 10, theta=-1.0, gamma=0.1)
    assert (result.images <= x).all() and (result.pixels_changed <= 78).all()
    with pytest.raises(ValueError, match="gamma"):
        jsma(normal, x, y, gamma=0)
    with pytest.raises(ValueError, match="theta"):
        jsma(normal, x, y, theta=0)


def test_jsma_reports_each_jacobian_step_out_of_the_most_its_budget_allows(normal, mnist_test):
    x, y = mnist_test[0][:4], mnist_test[1][:4]
    heard = []
    result = jsma(normal, x, (y + 1) % 10, gamma=0.1, progress=lambda done, most: heard.append((done, most)))
    assert heard and all(most == int(0.1 * 784) // 2 for _, most in heard)
    steps = [done for done, _ in heard]
    assert steps == sorted(steps) and steps[-1] == int(result.iterations.max())
