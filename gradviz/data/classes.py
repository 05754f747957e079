"""The datasets' class names, in a module without torch: the study's participant page needs them and must
stay light (it never imports torch or loads a model)."""

CLASS_NAMES: dict[str, list[str]] = {
    "mnist": [str(i) for i in range(10)],
    "fashion-mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
}
DATASETS = tuple(CLASS_NAMES)
NUM_CLASSES = 10  # every dataset gradviz ships has ten classes
assert all(len(names) == NUM_CLASSES for names in CLASS_NAMES.values())
