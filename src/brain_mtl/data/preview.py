"""Pictures of a dataset: mask outlines drawn with OpenCV and a grid of samples per class (no matplotlib)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from brain_mtl.classes import CLASS_NAMES
from brain_mtl.data.io import read_image, read_mask
from brain_mtl.viz import sample_grid


def dataset_preview(
    root: str | os.PathLike, per_class: int = 5, split: str = "train", tile: int = 144, seed: int = 0
) -> np.ndarray:
    """Grid of a few images per class of a BRISC-layout folder, tumour outlines drawn from the masks.

    Args:
        root: dataset root (``classification_task/`` and ``segmentation_task/`` inside).
        per_class: images per class row.
        split: which split to show.
        tile: tile side in pixels.
        seed: picks which images are shown.

    Returns:
        ``(H, W, 3)`` uint8 RGB picture.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    rows = []
    for name in CLASS_NAMES:
        files = sorted((root / "classification_task" / split / name).glob("*.*"))
        chosen = [files[i] for i in sorted(rng.choice(len(files), min(per_class, len(files)), replace=False))]
        items = []
        for path in chosen:
            image = read_image(path)
            mask_file = root / "segmentation_task" / split / "masks" / (path.stem + ".png")
            mask = read_mask(mask_file) if mask_file.is_file() else None
            view = path.stem.split("_")[4] if path.stem.count("_") >= 4 else ""
            items.append((image, mask, f"{view} {image.shape[1]}x{image.shape[0]}"))
        rows.append((name, items))
    return sample_grid(rows, tile=tile)
