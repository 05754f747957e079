"""The datasets' class names and image shapes, in a module without torch: the study's participant page needs
them and must stay light (it never imports torch or loads a model)."""

_DIGITS = [str(i) for i in range(10)]
CLASS_NAMES: dict[str, list[str]] = {
    "mnist": _DIGITS,
    "fashion-mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
    "decoy-mnist": _DIGITS,  # Ross et al. 2017: MNIST with a label-coded swatch (gradviz.data.ground_truth)
    "block-mnist": ["0", "1"],  # Shah et al. 2021: a 0-or-1 digit block above or below a null block
}
DATASETS = tuple(CLASS_NAMES)
IMAGE_SHAPES: dict[str, tuple[int, int]] = {name: (28, 28) for name in DATASETS} | {"block-mnist": (56, 28)}


def num_classes(dataset: str) -> int:
    """How many classes `dataset` has (ten for all but Block MNIST's two)."""
    return len(CLASS_NAMES[dataset])


def image_shape(dataset: str) -> tuple[int, int]:
    """(height, width) of `dataset`'s images: what a model for it is built for."""
    return IMAGE_SHAPES[dataset]
