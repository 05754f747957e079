"""Let PyPI's torchvision wheel (a CUDA build) import beside the pinned CPU-only torch.

That wheel's C++ ops library links CUDA's libraries, so it does not load; torchvision then registers fake
kernels for two operators it never defined (nms, qnms) and its import fails ("operator torchvision::nms does not
exist"). Declaring those two schemas just before torchvision imports lets its Python half (models, transforms)
load; the C++ operators themselves stay unavailable, so calling nms still raises. No gradviz code path calls them.

scripts/install.sh installs this file with a .pth line only where `import torchvision` fails that way. Importing
it costs nothing: torch is imported only when torchvision is.
"""
import importlib.abc
import importlib.machinery
import sys
from pathlib import Path

_SCHEMA = "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"


class _DeclareTorchvisionOps(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "torchvision":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name)
        if spec is not None and spec.origin:
            _declare_unless_loadable(Path(spec.origin).parent)
        return None  # the normal finders import torchvision itself


def _declare_unless_loadable(package: Path) -> None:
    import torch

    try:
        torch.ops.load_library(str(next(package.glob("_C*.so"))))
        return  # a torchvision built for this torch: its own operators are there
    except (StopIteration, OSError, RuntimeError):
        pass
    library = torch.library.Library("torchvision", "DEF")
    for op in ("nms", "qnms"):
        library.define(op + _SCHEMA)
    _declare_unless_loadable.library = library  # a Library unregisters its definitions when collected


if not any(isinstance(f, _DeclareTorchvisionOps) for f in sys.meta_path):
    sys.meta_path.insert(0, _DeclareTorchvisionOps())
