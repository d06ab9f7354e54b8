"""brain_mtl: one U-Net that segments a brain tumour and classifies the MRI slice, in PyTorch Lightning.

The public names below are imported on first use, so that ``import brain_mtl`` stays cheap and the plain
network (:class:`brain_mtl.models.UNet`) can be used without Lightning's start-up cost.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

# albumentations checks PyPI for a newer release on import; training must not touch the network.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.1.0"

_PUBLIC = {
    "UNet": "brain_mtl.models",
    "UNetOutput": "brain_mtl.models",
    "BrainTumorModule": "brain_mtl.module",
    "BrainTumorDataModule": "brain_mtl.data",
    "Predictor": "brain_mtl.inference",
    "CLASS_NAMES": "brain_mtl.classes",
}
__all__ = [
    "CLASS_NAMES",
    "BrainTumorDataModule",
    "BrainTumorModule",
    "Predictor",
    "UNet",
    "UNetOutput",
    "__version__",
]

if TYPE_CHECKING:
    from brain_mtl.classes import CLASS_NAMES
    from brain_mtl.data import BrainTumorDataModule
    from brain_mtl.inference import Predictor
    from brain_mtl.models import UNet, UNetOutput
    from brain_mtl.module import BrainTumorModule


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'brain_mtl' has no attribute {name!r}")
