"""The web app's inputs.

Uploaded bytes checked and decoded, or refused with a message naming the file; the bundled example scans.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from brain_mtl.data import io as data_io
from brain_mtl.data import synthesize_slice
from brain_mtl.data.clinical import read_dicom, read_nifti_bytes
from brain_mtl.data.errors import DatasetError
from brain_mtl.data.headers import FORMAT_NAMES, HeaderError, check_declared_size, sniff_format
from brain_mtl.data.io import is_truncated, to_rgb_uint8

UPLOAD_TYPES = ("png", "jpg", "jpeg", "bmp", "tif", "tiff", "webp", "dcm", "nii", "gz")
"""File extensions the uploader offers."""

MAX_PIXELS = 25_000_000
"""Largest upload the app predicts, in pixels (5000 x 5000); larger scans get a message, not a memory spike.
MRI slices are far smaller (BRISC: 512 x 512); ``predict-images`` takes bigger files."""


class UploadError(ValueError):
    """An uploaded file cannot be predicted; the message names the file and says what to do."""


@dataclass(frozen=True)
class ScanInput:
    """One scan to predict: an upload (``data`` holds its bytes) or a bundled example (``image`` and ``truth``).

    Attributes:
        name: the file name shown and used for the downloads.
        digest: a content hash, the cache key of its prediction.
        data: the uploaded bytes (None for examples).
        image: the decoded ``(H, W, 3)`` uint8 RGB image (examples), else None.
        truth: the true tumour mask ``(H, W)`` (synthetic examples), else None.
    """

    name: str
    digest: str
    data: bytes | None = None
    image: np.ndarray | None = None
    truth: np.ndarray | None = None

    @classmethod
    def upload(cls, name: str, data: bytes) -> ScanInput:
        """An uploaded file."""
        return cls(name=name, digest=hashlib.sha256(data).hexdigest(), data=data)

    def read(self, max_pixels: int = MAX_PIXELS) -> np.ndarray:
        """The scan as ``(H, W, 3)`` uint8 RGB.

        Raises:
            UploadError: the upload is empty, not an image, truncated, corrupt or too large.
        """
        if self.image is not None:
            return self.image
        return read_upload(self.name, self.data or b"", max_pixels)


def read_upload(name: str, data: bytes, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode an uploaded file into ``(H, W, 3)`` uint8 RGB, as ``predict-images`` reads files.

    A DICOM file (``.dcm``, or ``DICM`` at byte 128) is read by :func:`brain_mtl.data.clinical.read_dicom` (its
    first frame), a NIfTI volume (``.nii``, ``.nii.gz``) by :func:`~brain_mtl.data.clinical.read_nifti` (its
    middle through-plane slice). Gray, RGB, RGBA, 16-bit: the data package's reader (:mod:`brain_mtl.data.io`)
    converts them. The size is read from the file's own header before any pixel is decoded
    (:func:`brain_mtl.data.headers.check_declared_size`, for
    every accepted format), and a file whose size cannot be read that way is refused, so a huge or disguised image
    never reaches the decoder.

    Args:
        name: the file's name (in messages).
        data: its bytes.
        max_pixels: the largest accepted width x height.

    Raises:
        UploadError: empty, not an image, truncated, corrupt, larger than ``max_pixels`` or unmeasurable; the message
            names the file and says what to do.
    """
    if not data:
        raise UploadError(f"{name}: the file is empty (0 bytes): upload the scan again.")
    if name.lower().endswith((".nii", ".nii.gz")):
        try:  # one slice of a volume: the middle one (predict-images predicts every slice and writes a .nii.gz mask)
            volume = read_nifti_bytes(name, data)
        except ValueError as error:
            raise UploadError(str(error)) from error
        image = volume.slices[len(volume.slices) // 2].image
        if image.shape[0] * image.shape[1] > max_pixels:
            raise UploadError(f"{name}: its slices are larger than {max_pixels / 1e6:g} megapixels")
        return image
    if name.lower().endswith(".gz"):
        raise UploadError(f"{name}: a .gz file that is not a NIfTI volume (.nii.gz): upload the scan itself.")
    if name.lower().endswith((".dcm", ".dicom")) or data[128:132] == b"DICM":
        try:  # a multi-frame file: its first frame (predict-images predicts every frame)
            return read_dicom(name, data, max_pixels)[0].image
        except ValueError as error:
            raise UploadError(str(error)) from error
    try:
        if sniff_format(data) is not None:  # no image format at all: the reader below refuses it undecoded
            check_declared_size(data, name, max_pixels)
    except HeaderError as error:
        if error.kind == "too_large" and error.size is not None:
            raise UploadError(
                f"{name}: {error.size.width} x {error.size.height} pixels is larger than the app takes "
                f"({max_pixels / 1e6:g} megapixels): downscale it, or predict it with "
                "`python -m brain_mtl predict-images`."
            ) from error
        raise UploadError(str(error)) from error
    fmt = sniff_format(data)
    if fmt is not None and is_truncated(data):
        raise UploadError(
            f"{name}: truncated: the {FORMAT_NAMES[fmt]} data ends before its end marker (an interrupted download "
            "or copy): upload the complete file."
        )
    try:
        raw = data_io.decode_unchanged(data, name, max_pixels)
    except DatasetError as error:
        raise UploadError(str(error)) from error
    return to_rgb_uint8(raw)


EXAMPLES: dict[str, tuple[int, int]] = {
    "example_glioma.png": (0, 11),
    "example_meningioma.png": (1, 12),
    "example_pituitary.png": (2, 13),
    "example_no_tumor.png": (3, 14),
}
"""Bundled example scans: name -> (class index, seed) of a synthetic slice drawn by :func:`synthesize_slice`."""


def example_scan(name: str, size: int = 384) -> ScanInput:
    """A bundled example: a synthetic axial slice (not a real scan) with its true tumour mask."""
    label, seed = EXAMPLES[name]
    gray, truth = synthesize_slice(np.random.default_rng(seed), label, "ax", size, size)
    image = np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    return ScanInput(name=name, digest=f"example:{name}:{seed}:{size}", image=image, truth=truth.astype(np.uint8))
