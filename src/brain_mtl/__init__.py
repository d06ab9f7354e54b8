"""brain_mtl: one U-Net that segments a brain tumour and classifies the MRI slice, in PyTorch Lightning."""

import os

# albumentations checks PyPI for a newer release on import; training must not touch the network.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.1.0"
