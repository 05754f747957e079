"""gradviz: input-gradient regularization, saliency and adversarial robustness (Ross & Doshi-Velez, 2018)."""
__version__ = "0.1.0"
__all__ = ["load_dataset", "list_models", "load_model", "__version__"]


def __getattr__(name: str):
    """Import torch-heavy parts on first use, so listing model cards stays fast."""
    if name == "load_dataset":
        from gradviz.data.datasets import load_dataset

        return load_dataset
    if name == "list_models":
        from gradviz.nets.cards import list_models

        return list_models
    if name == "load_model":
        from gradviz.nets.store import load_model

        return load_model
    raise AttributeError(f"module 'gradviz' has no attribute {name!r}")
