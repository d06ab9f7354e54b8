"""Drawing helpers shared by the TensorBoard callbacks, the evaluation report and the prediction overlays.

Everything here works on ``uint8`` RGB arrays of shape (H, W, 3) and uses OpenCV only, so that the library needs
no plotting package.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from brain_mtl.errors import WriteError
from brain_mtl.files import atomic_write_bytes

GREEN = (0, 220, 0)
"""Ground-truth outlines."""
RED = (255, 40, 40)
"""Predicted masks."""
YELLOW = (255, 220, 0)


def draw_outline(image: np.ndarray, mask: np.ndarray, color: tuple[int, int, int], thickness: int = 1) -> np.ndarray:
    """Draw the outline of a binary mask on a copy of an image.

    Args:
        image: (H, W, 3) uint8 RGB.
        mask: (H, W) array, non-zero inside the object.
        color: RGB colour of the outline.
        thickness: line width in pixels.

    Returns:
        (H, W, 3) uint8 RGB with the outline drawn.
    """
    out = np.ascontiguousarray(image).copy()
    contours, _ = cv2.findContours((mask > 0).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(out, contours, -1, color, thickness)
    return out


def blend_mask(
    image: np.ndarray, mask: np.ndarray, color: tuple[int, int, int] = RED, alpha: float = 0.4
) -> np.ndarray:
    """Tint the pixels of a binary mask on a copy of an image.

    Args:
        image: (H, W, 3) uint8 RGB.
        mask: (H, W) array, non-zero inside the object.
        color: RGB tint.
        alpha: opacity of the tint inside the mask.

    Returns:
        (H, W, 3) uint8 RGB.
    """
    out = np.ascontiguousarray(image).copy()
    inside = mask > 0
    if inside.any():
        tint = np.asarray(color, dtype=np.float32)
        out[inside] = ((1 - alpha) * out[inside] + alpha * tint).astype(np.uint8)
    return out


def put_text(image: np.ndarray, lines: Sequence[str], color: tuple[int, int, int] = YELLOW) -> np.ndarray:
    """Write lines of text in the top-left corner on a dark band, on a copy of an image.

    The font scales with the image width so that a caption stays readable on 64 px and on 1024 px images.

    Args:
        image: (H, W, 3) uint8 RGB.
        lines: text lines, top to bottom.
        color: RGB text colour.

    Returns:
        (H, W, 3) uint8 RGB.
    """
    out = np.ascontiguousarray(image).copy()
    scale = max(0.3, out.shape[1] / 640)
    thickness = max(1, round(scale * 1.5))
    line_height = int(22 * scale) + 2
    for i, text in enumerate(lines):
        (width, _), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        y = (i + 1) * line_height
        cv2.rectangle(out, (0, y - line_height + 2), (width + 4, y + 3), (0, 0, 0), -1)
        cv2.putText(out, text, (2, y), cv2.FONT_HERSHEY_SIMPLEX, scale, color, thickness, cv2.LINE_AA)
    return out


def overlay(
    image: np.ndarray,
    pred_mask: np.ndarray | None = None,
    true_mask: np.ndarray | None = None,
    caption: Sequence[str] = (),
) -> np.ndarray:
    """The standard overlay: predicted mask tinted red, ground truth outlined green, a caption on top.

    Args:
        image: (H, W, 3) uint8 RGB scan.
        pred_mask: (H, W) predicted binary mask, or None.
        true_mask: (H, W) ground-truth binary mask, or None.
        caption: text lines (class, probability, ...).

    Returns:
        (H, W, 3) uint8 RGB.
    """
    out = image
    if pred_mask is not None:
        out = blend_mask(out, pred_mask, RED)
        out = draw_outline(out, pred_mask, RED)
    if true_mask is not None:
        out = draw_outline(out, true_mask, GREEN)
    if caption:
        out = put_text(out, caption)
    return np.ascontiguousarray(out)


def image_grid(tiles: Sequence[np.ndarray], ncols: int, pad: int = 2, background: int = 0) -> np.ndarray:
    """Arrange (H, W, 3) uint8 tiles in a grid with ``ncols`` columns; every picture grid of the library is one.

    Tiles of another size than the first are resized to it.

    Args:
        tiles: non-empty sequence of (H, W, 3) uint8 images.
        ncols: number of columns.
        pad: border between tiles (and around them) in pixels.
        background: gray level of the border (0: black, 255: white).

    Returns:
        (rows * (H + pad) + pad, ncols * (W + pad) + pad, 3) uint8.

    Raises:
        ValueError: no tile was given.
    """
    if not tiles:
        raise ValueError("image_grid needs at least one tile")
    height, width = tiles[0].shape[:2]
    ncols = max(1, min(ncols, len(tiles)))
    nrows = -(-len(tiles) // ncols)
    grid = np.full((nrows * (height + pad) + pad, ncols * (width + pad) + pad, 3), background, dtype=np.uint8)
    for i, tile in enumerate(tiles):
        if tile.shape[:2] != (height, width):
            tile = cv2.resize(tile, (width, height), interpolation=cv2.INTER_AREA)
        r, c = divmod(i, ncols)
        y, x = pad + r * (height + pad), pad + c * (width + pad)
        grid[y : y + height, x : x + width] = tile
    return grid


def confusion_matrix_image(matrix: np.ndarray, class_names: Sequence[str], cell: int = 90) -> np.ndarray:
    """Render a confusion matrix (rows: true class, columns: predicted class) as an RGB image.

    Each cell shows the count and the row-normalised share; the shade follows the row share, so that a
    class with few images is as readable as a large one.

    Args:
        matrix: (C, C) integer counts.
        class_names: C names, in index order.
        cell: side of one cell in pixels.

    Returns:
        (H, W, 3) uint8 RGB.
    """
    matrix = np.asarray(matrix, dtype=np.int64)
    n = matrix.shape[0]
    margin_left, margin_top = 110, 40
    height, width = margin_top + n * cell + 30, margin_left + n * cell + 10
    img = np.full((height, width, 3), 255, dtype=np.uint8)
    row_sums = matrix.sum(axis=1, keepdims=True).clip(min=1)
    share = matrix / row_sums
    font = cv2.FONT_HERSHEY_SIMPLEX
    for i in range(n):
        for j in range(n):
            x0, y0 = margin_left + j * cell, margin_top + i * cell
            level = int(255 - 200 * share[i, j])
            cv2.rectangle(img, (x0, y0), (x0 + cell, y0 + cell), (level, level, 255), -1)
            cv2.rectangle(img, (x0, y0), (x0 + cell, y0 + cell), (120, 120, 120), 1)
            ink = (255, 255, 255) if share[i, j] > 0.6 else (0, 0, 0)
            cv2.putText(img, str(matrix[i, j]), (x0 + 8, y0 + cell // 2), font, 0.6, ink, 1, cv2.LINE_AA)
            cv2.putText(img, f"{share[i, j]:.2f}", (x0 + 8, y0 + cell // 2 + 22), font, 0.45, ink, 1, cv2.LINE_AA)
    for k, name in enumerate(class_names):
        label = name[:12]
        cv2.putText(img, label, (4, margin_top + k * cell + cell // 2), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(img, label, (margin_left + k * cell + 4, margin_top - 8), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "rows: true class, columns: predicted", (4, height - 10), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return img


def sample_grid(
    rows: Sequence[tuple[str, Sequence[tuple[np.ndarray, np.ndarray | None, str]]]],
    fit: Callable[[np.ndarray], np.ndarray],
    tile: int = 160,
    label_width: int = 110,
) -> np.ndarray:
    """Assemble captioned samples into one picture, a row per class: an :func:`image_grid` with row titles.

    Each image, its mask (if any) outlined in green, is fitted into a ``tile`` square by ``fit``, with its caption
    below.

    Args:
        rows: ``(row title, [(rgb image, mask or None, caption), ...])`` per row; at least one row.
        fit: an RGB image -> its ``(tile, tile, 3)`` picture (the data pipeline's letterbox, for one).
        tile: side of each square tile in pixels.
        label_width: width of the column holding the row titles.

    Returns:
        ``(H, W, 3)`` uint8 RGB picture on white.

    Raises:
        ValueError: no row was given.
    """
    if not rows:
        raise ValueError("sample_grid needs at least one row")
    columns = max(1, *(len(items) for _, items in rows))
    caption_h = 16
    blank = np.full((tile + caption_h, tile, 3), 255, dtype=np.uint8)
    cells = []
    for _, items in rows:
        for image, mask, caption in items:
            # Ground truth in green, as in every other picture the library draws.
            shown = (
                draw_outline(image, mask, GREEN, thickness=max(1, round(max(image.shape[:2]) / 200)))
                if mask is not None
                else image
            )
            cell = blank.copy()
            cell[:tile] = fit(shown)
            cv2.putText(cell, caption, (3, tile + 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (40, 40, 40), 1, cv2.LINE_AA)
            cells.append(cell)
        cells.extend([blank] * (columns - len(items)))
    body = image_grid(cells, columns, pad=0, background=255)
    titles = np.full((body.shape[0], label_width, 3), 255, dtype=np.uint8)
    for r, (title, _) in enumerate(rows):
        top = r * (tile + caption_h)
        cv2.putText(titles, title, (6, top + tile // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return np.hstack([titles, body])


def heatmap_overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend a ``[0, 1]`` heat map, coloured with OpenCV's JET map, onto an image.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        heatmap: ``(H, W)`` float map in ``[0, 1]`` (resized to the image if its size differs).
        alpha: weight of the colour map in the blend.

    Returns:
        ``(H, W, 3)`` uint8 RGB.
    """
    height, width = image.shape[:2]
    heat = np.asarray(heatmap, dtype=np.float32)
    if heat.shape != (height, width):
        heat = cv2.resize(heat, (width, height), interpolation=cv2.INTER_LINEAR)
    heat_u8 = np.clip(heat * 255.0 + 0.5, 0, 255).astype(np.uint8)
    colored = cv2.cvtColor(cv2.applyColorMap(heat_u8, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    return cv2.addWeighted(np.ascontiguousarray(image, dtype=np.uint8), 1.0 - alpha, colored, alpha, 0.0)


def write_png(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write a uint8 picture, (H, W) gray or (H, W, 3) RGB, as a PNG file; the parent folder is created.

    Encodes in memory and writes the bytes (not ``cv2.imwrite``), so that paths with non-ASCII characters work on
    every OS, atomically (:func:`brain_mtl.files.atomic_path`). Every PNG the library writes goes through here.

    Returns:
        The path written.

    Raises:
        OSError: the encoding or the write failed (the message names the path).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise WriteError(f"cannot write {path}: its folder cannot be created ({error.strerror or error}).") from error
    pixels = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    ok, encoded = cv2.imencode(".png", pixels)
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    atomic_write_bytes(path, encoded.tobytes())  # complete or absent; replaces a link in its place, not its target
    return path
