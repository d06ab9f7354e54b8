"""Reading image and mask files into the arrays the rest of the library expects.

Whatever a file holds (8-bit gray, RGB, RGBA, 16-bit, float TIFF), :func:`read_image` returns a 3-channel
``uint8`` RGB array and :func:`read_mask` a ``{0, 1}`` ``uint8`` array, so datasets, inference and plotting
never branch on the file format.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from brain_mtl.data.errors import DatasetError
from brain_mtl.data.headers import (
    FORMAT_NAMES,
    MAX_FILE_PIXELS,
    HeaderError,
    check_declared_size,
    describe_start,
    sniff_format,
)

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".jp2", ".pgm", ".ppm"}
)
"""File extensions (lower case) that are treated as images when a folder is indexed."""

EXTENSION_FORMATS: dict[str, str] = {
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".png": "png",
    ".bmp": "bmp",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".webp": "webp",
    ".jp2": "jpeg2000",
    ".pgm": "pnm",
    ".ppm": "pnm",
}
"""The format each image extension promises (:func:`sniff_format` tells what a file really holds)."""

FORMAT_EXTENSIONS: dict[str, str] = {
    "jpeg": ".jpg",
    "png": ".png",
    "bmp": ".bmp",
    "tiff": ".tif",
    "webp": ".webp",
    "jpeg2000": ".jp2",
    "pnm": ".pgm",
}
"""The usual extension of each format (what a misnamed file should be renamed to)."""

MASK_THRESHOLD = 127
"""A mask pixel is tumour when its 8-bit value is above this (BRISC masks hold 0-7 and 248-255, not 0/255)."""


def read_bytes(path: str | os.PathLike) -> bytes:
    """Return the raw bytes of a file, raising :class:`DatasetError` naming the file when it cannot be read."""
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise DatasetError(f"{path}: cannot read the file ({error.strerror or error}).") from error


def decode_unchanged(data: bytes, path: str | os.PathLike, max_pixels: int = MAX_FILE_PIXELS) -> np.ndarray:
    """Decode encoded image bytes as stored (any depth, any channel count).

    The header is measured first (:func:`brain_mtl.data.headers.check_declared_size`): content that is no accepted
    image format, a header that does not say the size, several TIFF pages or more than ``max_pixels`` are refused
    before a pixel is decoded.

    Args:
        data: the file's bytes.
        path: used only in the error message.
        max_pixels: the largest accepted width x height.

    Returns:
        ``(H, W)`` or ``(H, W, C)`` array in the file's own dtype (OpenCV's BGR(A) channel order).

    Raises:
        DatasetError: the bytes are not an image OpenCV can decode, or the header check refuses them.
    """
    if data and sniff_format(data) is not None:
        try:
            check_declared_size(data, path, max_pixels)
        except HeaderError as error:
            if is_truncated(data):
                fmt = FORMAT_NAMES[sniff_format(data)]
                raise DatasetError(
                    f"{path}: unreadable image: truncated: the {fmt} data ends before its end marker. "
                    "Replace or remove the file."
                ) from error
            raise DatasetError(str(error)) from error
    image = _imdecode(data) if data and sniff_format(data) is not None else None
    if image is None or image.size == 0:
        if not data:
            reason = "the file is empty"
        elif sniff_format(data) is None:
            reason = f"not an image: its content is no image format ({describe_start(data)})"
        elif is_truncated(data):
            reason = f"truncated: the {FORMAT_NAMES[sniff_format(data)]} data ends before its end marker"
        else:
            reason = f"corrupt: OpenCV cannot decode this {FORMAT_NAMES[sniff_format(data)]} data"
        raise DatasetError(f"{path}: unreadable image: {reason}. Replace or remove the file.")
    return image


class CapturedStderr:
    """What native code wrote to file descriptor 2 inside :func:`capture_native_stderr` (``text``, set on exit)."""

    def __init__(self) -> None:
        self.text = ""
        self.active = False  # False when file descriptor 2 could not be redirected (nothing was captured)


# One redirection of file descriptor 2 at a time: it is process-wide, so two overlapping ones would restore each
# other's target. Re-entrant so that a capture may nest inside another one of the same thread.
_STDERR_LOCK = threading.RLock()


@contextlib.contextmanager
def capture_native_stderr() -> Iterator[CapturedStderr]:
    """Capture what C libraries (libjpeg, libpng, OpenCV's logger) write to file descriptor 2 meanwhile.

    libjpeg reports corrupt data ("Corrupt JPEG data: ...") as a warning printed straight to the process's
    stderr, without a file name, and OpenCV then returns the image with the undecodable part flat grey. Reading
    the warning is the only way to notice. File descriptor 2 is pointed at a temporary file and restored on exit;
    the text is then in ``captured.text``. The redirection is process-wide: while it lasts, whatever any thread
    writes to stderr lands in the capture (callers give back what they cannot attribute, see
    :func:`release_captured`). Captures are serialised by a lock; run the decoding threads *inside* one capture,
    never one capture per thread.

    Yields:
        A :class:`CapturedStderr` whose ``text`` is filled when the block exits.
    """
    captured = CapturedStderr()
    with _STDERR_LOCK, tempfile.TemporaryFile() as sink:
        _flush_python_stderr()
        saved = None
        with contextlib.suppress(OSError):
            saved = os.dup(2)
        if saved is None:  # no file descriptor 2 (a detached process): nothing to capture, nothing to lose
            yield captured
            return
        try:
            os.dup2(sink.fileno(), 2)
            captured.active = True
            try:
                yield captured
            finally:
                _flush_python_stderr()
                os.dup2(saved, 2)
        finally:
            os.close(saved)
        sink.seek(0)
        captured.text = sink.read().decode("utf-8", errors="replace")


def _flush_python_stderr() -> None:
    with contextlib.suppress(Exception):
        if sys.stderr is not None:
            sys.stderr.flush()


def release_captured(text: str) -> None:
    """Write captured stderr text back to stderr (output of other code that a capture swallowed)."""
    if text:
        with contextlib.suppress(OSError):
            os.write(2, text.encode("utf-8", errors="replace"))


def decode_checked(data: bytes) -> tuple[np.ndarray | None, str]:
    """Decode bytes as stored and return what the decoder printed meanwhile.

    The caller measures the header first (:func:`brain_mtl.data.headers.check_declared_size`), as
    :func:`brain_mtl.data.inspection.inspect_file` does.

    Args:
        data: the file's bytes.

    Returns:
        ``(image or None, decoder messages)``: the messages are libjpeg's, libpng's or OpenCV's warnings about
        this data (empty for a clean file). A JPEG that decodes *with* a message is corrupt: part of it is grey.
    """
    with capture_native_stderr() as captured:
        image = _imdecode(data)
    return image, captured.text.strip()


def _imdecode(data: bytes) -> np.ndarray | None:
    if not data:
        return None
    # np.frombuffer + imdecode instead of cv2.imread: works with non-ASCII paths on every OS.
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    return None if image is None or image.size == 0 else image


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


def is_truncated(data: bytes, suffix: str | None = None) -> bool:
    """Tell whether encoded bytes end before their format's end marker (JPEG ``FFD9``, PNG ``IEND``).

    Some OpenCV versions decode a truncated JPEG without an error (the missing part comes out gray), so
    truncation is checked on the bytes. The format is told from the content (:func:`sniff_format`), so a JPEG
    named ``.png`` is judged as a JPEG; ``suffix`` is only a fallback for bytes with no known signature.
    Bytes *after* the end marker (padding, appended metadata) are not truncation. Formats without an end marker
    are never reported as truncated here.
    """
    fmt = sniff_format(data) or EXTENSION_FORMATS.get((suffix or "").lower())
    if fmt == "jpeg":
        return _jpeg_truncated(data)
    if fmt == "png":
        return _png_truncated(data)
    return False


# JPEG markers without a length field: TEM, RST0-7, SOI, EOI.
_JPEG_STANDALONE = {0x01, *range(0xD0, 0xDA)}


def _jpeg_truncated(data: bytes) -> bool:
    """True when the JPEG has no end marker (FFD9) after its first scan, or its header segments run past the end.

    The header segments are walked by their lengths up to the first scan (SOS), so the end marker of an embedded
    EXIF thumbnail does not count; inside scan data a literal FF is always followed by 00 or a restart marker,
    so the first FFD9 after the scan header is the image's end marker.
    """
    pos, size = 2, len(data)
    while pos < size:
        if data[pos] != 0xFF:
            return False  # broken header structure: corrupt, not truncated (the decoder will say)
        while pos < size and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= size:
            return True
        marker = data[pos]
        pos += 1
        if marker in _JPEG_STANDALONE:
            if marker == 0xD9:  # end marker before any scan: no image data
                return False
            continue
        if pos + 2 > size:
            return True
        length = int.from_bytes(data[pos : pos + 2], "big")
        if marker == 0xDA:
            return data.find(b"\xff\xd9", pos + length) < 0
        pos += length
    return True


def _png_truncated(data: bytes) -> bool:
    """True when the PNG's chunks (length, type, data, CRC) run out before the IEND chunk."""
    pos, size = 8, len(data)
    while pos + 8 <= size:
        length = int.from_bytes(data[pos : pos + 4], "big")
        if data[pos + 4 : pos + 8] == b"IEND":
            return False
        pos += 12 + length
    return True
