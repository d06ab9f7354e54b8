"""Pictures of a dataset: mask outlines drawn with OpenCV and a grid of samples per class (no matplotlib)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from brain_mtl.classes import CLASS_NAMES
from brain_mtl.data.io import read_image, read_mask
from brain_mtl.data.transforms import build_resize
from brain_mtl.viz import GREEN, draw_outline


def sample_grid(
    rows: Sequence[tuple[str, Sequence[tuple[np.ndarray, np.ndarray | None, str]]]],
    tile: int = 160,
    label_width: int = 110,
) -> np.ndarray:
    """Assemble tiles into one picture, a row per class.

    Args:
        rows: ``(row title, [(rgb image, mask or None, caption), ...])`` per row.
        tile: side of each square tile in pixels.
        label_width: width of the column holding the row titles.

    Returns:
        ``(H, W, 3)`` uint8 RGB picture.
    """
    columns = max((len(items) for _, items in rows), default=1)
    caption_h = 16
    height = len(rows) * (tile + caption_h)
    width = label_width + columns * tile
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    letterbox = build_resize(tile, keep_aspect=True)
    for r, (title, items) in enumerate(rows):
        top = r * (tile + caption_h)
        cv2.putText(canvas, title, (6, top + tile // 2), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        for c, (image, mask, caption) in enumerate(items):
            # Ground truth in green, as in every other picture the library draws.
            shown = (
                draw_outline(image, mask, GREEN, thickness=max(1, round(max(image.shape[:2]) / 200)))
                if mask is not None
                else image
            )
            left = label_width + c * tile
            canvas[top : top + tile, left : left + tile] = letterbox(image=shown)["image"]
            cv2.putText(canvas, caption, (left + 3, top + tile + 12), font, 0.35, (40, 40, 40), 1, cv2.LINE_AA)
    return canvas


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


def write_png(path: str | os.PathLike, rgb: np.ndarray) -> None:
    """Write an RGB uint8 picture as PNG (creating the parent folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9]):
        raise OSError(f"could not write {path}")
