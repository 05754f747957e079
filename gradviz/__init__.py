"""gradviz: input-gradient regularization, saliency and adversarial robustness (Ross & Doshi-Velez, 2018)."""
__version__ = "0.1.0"

from gradviz.datasets import load_dataset  # noqa: E402
from gradviz.modelstore import list_models, load_model  # noqa: E402

__all__ = ["load_dataset", "list_models", "load_model", "__version__"]
