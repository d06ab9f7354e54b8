"""Reading image and mask files into the arrays the rest of the library expects.

Whatever a file holds (8-bit gray, RGB, RGBA, 16-bit, float TIFF), :func:`read_image` returns a 3-channel
``uint8`` RGB array and :func:`read_mask` a ``{0, 1}`` ``uint8`` array, so datasets, inference and plotting
never branch on the file format.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from brain_mtl.data.errors import DatasetError

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".jp2", ".pgm", ".ppm"}
)
"""File extensions (lower case) that are treated as images when a folder is indexed."""

MASK_THRESHOLD = 127
"""A mask pixel is tumour when its 8-bit value is above this (BRISC masks hold 0-7 and 248-255, not 0/255)."""


def read_bytes(path: str | os.PathLike) -> bytes:
    """Return the raw bytes of a file, raising :class:`DatasetError` naming the file when it cannot be read."""
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise DatasetError(f"{path}: cannot read the file ({error.strerror or error}).") from error


def decode_unchanged(data: bytes, path: str | os.PathLike) -> np.ndarray:
    """Decode encoded image bytes as stored (any depth, any channel count).

    Args:
        data: the file's bytes.
        path: used only in the error message.

    Returns:
        ``(H, W)`` or ``(H, W, C)`` array in the file's own dtype (OpenCV's BGR(A) channel order).

    Raises:
        DatasetError: the bytes are not an image OpenCV can decode.
    """
    image = None
    if data:
        # np.frombuffer + imdecode instead of cv2.imread: works with non-ASCII paths on every OS.
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        reason = "the file is empty" if not data else "OpenCV cannot decode it (corrupt or not an image)"
        raise DatasetError(f"{path}: unreadable image: {reason}. Replace or remove the file.")
    return image


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Scale any-depth pixel data to uint8; 16-bit and float images are scaled by their own range."""
    if image.dtype == np.uint8:
        return image
    # MRI intensities have no absolute scale: map the image's own [min, max] to [0, 255].
    image = image.astype(np.float32)
    low = float(np.nanmin(image))
    high = float(np.nanmax(image))
    if high <= low:
        return np.zeros(image.shape, dtype=np.uint8)
    scaled = (np.nan_to_num(image, nan=low) - low) * (255.0 / (high - low))
    return np.clip(scaled + 0.5, 0, 255).astype(np.uint8)


def to_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Convert a decoded OpenCV array (gray, BGR or BGRA, any depth) to ``(H, W, 3)`` uint8 RGB."""
    image = to_uint8(image)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    channels = image.shape[2]
    if channels == 1:
        return cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2RGB)
    if channels == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if channels == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    # Two channels (gray + alpha) or more than four: keep the first as the intensity.
    return cv2.cvtColor(np.ascontiguousarray(image[:, :, 0]), cv2.COLOR_GRAY2RGB)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read any image file into a 3-channel uint8 RGB array.

    Gray images are repeated over three channels, an alpha channel is dropped, 16-bit and float images are
    scaled from their own minimum/maximum to 0-255.

    Args:
        path: image file (JPEG, PNG, BMP, TIFF, ...).

    Returns:
        ``(H, W, 3)`` uint8 array, RGB order.

    Raises:
        DatasetError: the file is missing, empty or not decodable; the message names the file.
    """
    return to_rgb_uint8(decode_unchanged(read_bytes(path), path))


def mask_from_array(mask: np.ndarray) -> np.ndarray:
    """Threshold a decoded mask (any depth or channel count) to ``(H, W)`` uint8 in ``{0, 1}``."""
    if mask.ndim == 3:
        # Colour masks: a pixel is tumour if any colour channel is (alpha is ignored).
        mask = mask[:, :, :3].max(axis=2) if mask.shape[2] >= 3 else mask[:, :, 0]
    if mask.dtype == np.uint16:
        mask = (mask >> 8).astype(np.uint8)
    elif mask.dtype != np.uint8:
        mask = to_uint8(mask)
    return (mask > MASK_THRESHOLD).astype(np.uint8)


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Read a mask file and threshold it (> 127 of 255) to ``{0, 1}``.

    BRISC masks are not exactly binary (values 0-7 and 248-255), so they are always thresholded. A mask
    stored as 0/1 therefore reads as empty: save such masks as 0/255.

    Args:
        path: mask file, usually an 8-bit PNG of the same size as its image.

    Returns:
        ``(H, W)`` uint8 array with values in ``{0, 1}``.

    Raises:
        DatasetError: the file is missing, empty or not decodable; the message names the file.
    """
    return mask_from_array(decode_unchanged(read_bytes(path), path))


def is_truncated(data: bytes, suffix: str) -> bool:
    """Tell whether encoded bytes end before their format's end marker (JPEG ``FFD9``, PNG ``IEND``).

    OpenCV decodes a truncated JPEG without an error (the missing part comes out gray), so truncation is
    checked on the bytes. Formats without an end marker are never reported as truncated here.
    """
    suffix = suffix.lower()
    if suffix in {".jpg", ".jpeg"}:
        tail = data[-64:].rstrip(b"\x00\r\n\t ")
        return not tail.endswith(b"\xff\xd9")
    if suffix == ".png":
        return b"IEND" not in data[-32:]
    return False
