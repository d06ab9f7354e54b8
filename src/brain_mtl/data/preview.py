"""Pictures of a dataset: mask outlines drawn with OpenCV and a grid of samples per class (no matplotlib)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from brain_mtl.classes import CLASS_NAMES
from brain_mtl.data.io import read_image, read_mask
from brain_mtl.data.layout import class_folders, classification_split_dir, is_image, parse_name, segmentation_dirs
from brain_mtl.data.transforms import build_resize
from brain_mtl.viz import sample_grid

__all__ = ["dataset_preview"]


def dataset_preview(
    root: str | os.PathLike,
    per_class: int = 5,
    split: str = "train",
    tile: int = 144,
    seed: int = 0,
    class_name_map: Mapping[str, str] | None = None,
) -> np.ndarray:
    """Grid of a few images per class of a BRISC-layout folder, tumour outlines drawn from the masks.

    Class folders are found under any spelling the index accepts (``no_tumor``, ``notumor``, ``glioma_tumor``,
    ...; see :func:`brain_mtl.data.layout.class_folders`); a mask is the segmentation mask with the image's name.

    Args:
        root: dataset root (``classification_task/`` and ``segmentation_task/`` inside).
        per_class: images per class row.
        split: which split to show.
        tile: tile side in pixels.
        seed: picks which images are shown.
        class_name_map: extra class-folder spellings -> class name, as for the index.

    Returns:
        ``(H, W, 3)`` uint8 RGB picture, one row per class.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    folders = class_folders(classification_split_dir(root, split), class_name_map)
    _, mask_dir = segmentation_dirs(root, split)
    masks = {p.stem: p for p in sorted(mask_dir.iterdir()) if is_image(p)} if mask_dir.is_dir() else {}
    rows = []
    for label, name in enumerate(CLASS_NAMES):
        files = sorted(p for folder in folders.get(label, []) for p in folder.iterdir() if is_image(p))
        chosen = [files[i] for i in sorted(rng.choice(len(files), min(per_class, len(files)), replace=False))]
        items = []
        for path in chosen:
            image = read_image(path)
            mask_file = masks.get(path.stem)
            mask = read_mask(mask_file) if mask_file is not None else None
            _, view = parse_name(path.stem)
            view = "" if view == "?" else view
            items.append((image, mask, f"{view} {image.shape[1]}x{image.shape[0]}"))
        rows.append((name, items))
    letterbox = build_resize(tile, keep_aspect=True)  # the pipeline's own letterbox
    return sample_grid(rows, lambda image: letterbox(image=image)["image"], tile=tile)
