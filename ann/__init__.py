"""ann: Asymmetric Non-local Networks for semantic segmentation.

``from ann import Segmenter`` is the Python API (:mod:`ann.api`); it is
imported on first use, so that ``import ann.errors`` and the other light
modules do not pull in torch, hydra and the models.
"""

import importlib
import os
from typing import Any

# albumentations asks PyPI for a newer version on every import: a network call
# per process (and DataLoader worker), and a warning on offline or proxied hosts.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

# Public name -> the module that defines it (PEP 562 lazy attributes). By
# module name, not an import statement: the package root sits below every
# floor and must not load the top floor when a light module is imported.
_LAZY = {"Segmenter": "ann.api", "list_models": "ann.api"}

__all__ = ["Segmenter", "list_models"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ann' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
