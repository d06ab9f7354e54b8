"""Pictures of a dataset: mask outlines drawn with OpenCV and a grid of samples per class (no matplotlib)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from brain_mtl.classes import CLASS_NAMES
from brain_mtl.data.io import read_image, read_mask

OUTLINE_COLOR: tuple[int, int, int] = (255, 64, 64)
"""RGB colour of mask outlines in previews."""


def draw_mask_outline(
    image: np.ndarray,
    mask: np.ndarray,
    color: tuple[int, int, int] = OUTLINE_COLOR,
    thickness: int = 1,
) -> np.ndarray:
    """Draw the outline of a binary mask on a copy of an RGB image.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        mask: ``(H, W)`` array, non-zero where the tumour is.
        color: RGB outline colour.
        thickness: line width in pixels.

    Returns:
        ``(H, W, 3)`` uint8 RGB copy with the outline drawn.
    """
    out = np.ascontiguousarray(image.copy())
    contours, _ = cv2.findContours((mask > 0).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(out, contours, -1, color, thickness, lineType=cv2.LINE_AA)
    return out


def _fit(image: np.ndarray, size: int) -> np.ndarray:
    """Resize keeping the aspect ratio and pad to ``size`` x ``size`` with black."""
    height, width = image.shape[:2]
    scale = size / max(height, width)
    new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
    canvas = np.zeros((size, size, 3), dtype=np.uint8)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    canvas[top : top + new_h, left : left + new_w] = resized
    return canvas


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
    for r, (title, items) in enumerate(rows):
        top = r * (tile + caption_h)
        cv2.putText(canvas, title, (6, top + tile // 2), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        for c, (image, mask, caption) in enumerate(items):
            shown = (
                draw_mask_outline(image, mask, thickness=max(1, round(max(image.shape[:2]) / 200)))
                if mask is not None
                else image
            )
            left = label_width + c * tile
            canvas[top : top + tile, left : left + tile] = _fit(shown, tile)
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
