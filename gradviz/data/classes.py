"""The datasets' names, class names and image shapes, in a module without torch: the study's participant page
needs them and must stay light (it never imports torch or loads a model).

The built-in datasets are listed here; datasets a user registers (gradviz.data.registered) are read from their
cards, so the registry is data: built-in + registered.
"""
from gradviz.data.registered import registered_card, registered_names

_DIGITS = [str(i) for i in range(10)]
BUILTIN_CLASS_NAMES: dict[str, list[str]] = {
    "mnist": _DIGITS,
    "fashion-mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
    "decoy-mnist": _DIGITS,  # Ross et al. 2017: MNIST with a label-coded swatch (gradviz.data.ground_truth)
    "block-mnist": ["0", "1"],  # Shah et al. 2021: a 0-or-1 digit block above or below a null block
}
BUILTIN_CLASS_NAMES["decoy-fashion-mnist"] = BUILTIN_CLASS_NAMES["fashion-mnist"]  # Schramowski et al. 2020
BUILTIN_DATASETS = tuple(BUILTIN_CLASS_NAMES)
_BUILTIN_SHAPES = {name: (28, 28) for name in BUILTIN_DATASETS} | {"block-mnist": (56, 28)}


class UnknownDataset(ValueError):
    """A dataset name that is neither built in nor registered; the message lists the known ones."""


def dataset_names() -> tuple[str, ...]:
    """Every dataset gradviz knows: the built-in ones, then the registered ones by name."""
    return BUILTIN_DATASETS + tuple(n for n in registered_names() if n not in BUILTIN_CLASS_NAMES)


def _card(dataset: str) -> dict:
    card = registered_card(dataset) if dataset not in BUILTIN_CLASS_NAMES else None
    if card is None:
        raise UnknownDataset(f"unknown dataset {dataset!r}; choose one of {', '.join(dataset_names())} "
                             "(or register yours: gradviz data add NAME PATH)")
    return card


def class_names(dataset: str) -> list[str]:
    """The names of `dataset`'s classes, in label order."""
    if dataset in BUILTIN_CLASS_NAMES:
        return BUILTIN_CLASS_NAMES[dataset]
    return list(_card(dataset)["class_names"])


def num_classes(dataset: str) -> int:
    """How many classes `dataset` has (ten for all built-in ones but Block MNIST's two)."""
    return len(class_names(dataset))


def image_shape(dataset: str) -> tuple[int, int]:
    """(height, width) of `dataset`'s images: what a model for it is built for."""
    if dataset in BUILTIN_CLASS_NAMES:
        return _BUILTIN_SHAPES[dataset]
    card = _card(dataset)
    return int(card["height"]), int(card["width"])


def channels(dataset: str) -> int:
    """Colour channels of `dataset`'s images: 1 (grey, every built-in dataset) or 3 (RGB)."""
    return 1 if dataset in BUILTIN_CLASS_NAMES else int(_card(dataset)["channels"])


def input_shape(dataset: str) -> tuple[int, int, int]:
    """(channels, height, width): the shape of one image as a model for `dataset` takes it."""
    return (channels(dataset), *image_shape(dataset))
