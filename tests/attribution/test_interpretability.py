"""The paper's gradient-norm comparison, measured on the committed zoo."""
import pandas as pd
import torch

from gradviz.attribution.measures import gradient_norms, input_gradient, zero_share
from gradviz.nets.store import load_model


def test_gradient_norms_of_true_and_target_log_probabilities(mnist_test):
    x, y = mnist_test[0][:64], mnist_test[1][:64]
    models = {n: load_model(n)[0] for n in ("mnist-normal", "mnist-gradreg")}
    norms = gradient_norms(models, x, y)
    assert list(norms["kind"].unique()) == ["log p(true)", "log p(target)", "Σ log p"]
    assert len(norms) == 2 * 3 * 64
    true = norms[(norms.model == "mnist-normal") & (norms.kind == "log p(true)")].norm.to_numpy()
    ce = input_gradient(models["mnist-normal"], x, y, "ce").flatten(1).norm(dim=1).numpy()
    assert torch.allclose(torch.from_numpy(true), torch.from_numpy(ce), rtol=1e-4)  # ‖∇ log p(y)‖ = ‖∇ CE(y)‖
    median = norms.groupby(["model", "kind"]).norm.median()
    assert median["mnist-gradreg", "log p(target)"] < median["mnist-normal", "log p(target)"]
    shares = zero_share(norms)
    assert len(shares) == 6 and (shares["zero"] == 0).all()  # neither zoo model saturates on these digits
    toy = pd.DataFrame({"model": ["a", "a", "a", "a", "b"], "kind": "k", "norm": [0.0, 1.0, 0.0, 2.0, 3.0]})
    assert zero_share(toy).set_index("model")["zero"].to_dict() == {"a": 0.5, "b": 0.0}
