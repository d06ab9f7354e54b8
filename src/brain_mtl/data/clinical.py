"""Clinical files as the network's 2D slices: DICOM (pydicom) and NIfTI volumes (nibabel), and masks back.

Both readers are optional (``pip install 'brain_mtl[clinical]'``); a missing one is an error that names the file and
the package to install. What each reader does to the intensities, stated once:

- **DICOM**: the stored values go through the modality LUT (``RescaleSlope`` / ``RescaleIntercept``), then the
  file's first window (``WindowCenter`` / ``WindowWidth``, DICOM's linear VOI function) when it has one, else the
  0.5th to 99.5th percentile of the file's pixels (all frames together), onto 0..255. ``MONOCHROME1`` (white is
  low) is inverted. A multi-frame file is one slice per frame. Compressed pixel data is decoded by pydicom's
  pixel handlers when they are installed (e.g. ``pylibjpeg``), else one line names the file and the transfer syntax.
- **NIfTI** (``.nii``, ``.nii.gz``): the stored values scaled by the header (``scl_slope`` / ``scl_inter``), then
  the volume's 0.5th to 99.5th percentile onto 0..255, every slice along one axis: by default the through-plane
  axis, the voxel axis with the largest spacing (the slice thickness) or, for isotropic voxels, the one closest to
  the head's foot-to-head axis (axial slices). Each slice is shown as a radiologist reads it (the patient's right on
  the image's left, anterior or superior at the top), as the BRISC images are; the mask of each slice goes back to
  the same voxels, so ``<name>_mask.nii.gz`` has the input's shape and affine.
"""

from __future__ import annotations

import gzip
import io
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from brain_mtl.files import atomic_write_bytes

__all__ = [
    "CLINICAL_SUFFIXES",
    "ClinicalSlice",
    "NiftiVolume",
    "clinical_kind",
    "percentile_window",
    "read_dicom",
    "read_nifti",
    "read_nifti_bytes",
    "window_to_uint8",
    "write_nifti_mask",
]

CLINICAL_SUFFIXES = (".dcm", ".dicom", ".nii", ".nii.gz")
"""File endings read as clinical files (DICOM files without an extension are recognised by their content)."""

_PERCENTILES = (0.5, 99.5)


@dataclass
class ClinicalSlice:
    """One 2D slice of a clinical file, ready for the network.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB (gray repeated).
        source: the name of the slice in tables: the file, with ``#frame<k>`` or ``#slice<k>`` for one of several.
        index: the frame or slice index (None for a single-frame DICOM file).
        sop_instance_uid: the DICOM SOP Instance UID (None for NIfTI).
    """

    image: np.ndarray
    source: str
    index: int | None = None
    sop_instance_uid: str | None = None


@dataclass
class NiftiVolume:
    """A NIfTI volume as slices, with what it takes to put a mask per slice back into the volume's voxels.

    Attributes:
        path: the file.
        slices: one :class:`ClinicalSlice` per index along ``axis``.
        axis: the voxel axis sliced along (of the stored array).
        shape: the stored volume's shape (3D).
        affine: the voxel-to-world matrix of the file.
        header: the file's NIfTI header (copied into the mask).
    """

    path: Path
    slices: list[ClinicalSlice]
    axis: int
    shape: tuple[int, int, int]
    affine: np.ndarray
    header: Any = field(repr=False, default=None)


def _need(module: str, path: Path) -> Any:
    try:
        return __import__(module)
    except ImportError:
        raise ValueError(
            f"{path}: reading this file needs {module}, which is not installed: pip install 'brain_mtl[clinical]' "
            f"(or pip install {module})"
        ) from None


def clinical_kind(path: str | os.PathLike) -> Literal["dicom", "nifti"] | None:
    """``dicom``, ``nifti`` or None, by the name (``.dcm``, ``.nii``, ``.nii.gz``) or else by the content.

    Content: ``DICM`` at byte 128 (a DICOM Part 10 file, whatever its name), or a NIfTI-1/2 header (the magic
    ``n+1`` / ``n+2``, gzip-compressed or not).
    """
    path = Path(path)
    name = path.name.lower()
    if name.endswith((".dcm", ".dicom")):
        return "dicom"
    if name.endswith((".nii", ".nii.gz")):
        return "nifti"
    try:
        with path.open("rb") as handle:
            head = handle.read(540)
    except OSError:
        return None
    if head[128:132] == b"DICM":
        return "dicom"
    if head[:2] == b"\x1f\x8b":
        try:
            with gzip.open(path, "rb") as handle:
                head = handle.read(540)
        except (OSError, EOFError):
            return None
    if head[344:347] in (b"n+1", b"ni1") or head[4:7] in (b"n+2", b"ni2"):
        return "nifti"
    return None


def percentile_window(values: np.ndarray) -> tuple[float, float]:
    """The 0.5th and 99.5th percentiles: the intensity range mapped onto 0..255 when a file gives no window."""
    low, high = np.percentile(np.asarray(values, dtype=np.float64), _PERCENTILES)
    return float(low), float(high)


def window_to_uint8(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """``values`` from ``low`` (black) to ``high`` (white) onto 0..255, clipped outside (all black when high <= low)."""
    if not high > low:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (values.astype(np.float64) - low) / (high - low)
    return np.round(np.clip(scaled, 0.0, 1.0) * 255.0).astype(np.uint8)


def _rgb(gray: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=-1))


def _first(value: Any) -> float:
    """A DICOM number, or the first of several (WindowCenter may hold one per window)."""
    try:
        return float(value[0]) if not isinstance(value, str | bytes) and hasattr(value, "__len__") else float(value)
    except (TypeError, ValueError, IndexError):
        return float("nan")


def _dicom_window(ds: Any, values: np.ndarray) -> np.ndarray:
    """Modality values onto 0..255: the file's first window (DICOM's linear VOI function), else percentiles."""
    center, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
    if np.isfinite(center) and np.isfinite(width) and width >= 1:
        # PS3.3 C.11.2.1.2.1: below c - 0.5 - (w - 1) / 2 black, above c - 0.5 + (w - 1) / 2 white, linear between.
        return window_to_uint8(values, center - 0.5 - (width - 1) / 2, center - 0.5 + (width - 1) / 2)
    return window_to_uint8(values, *percentile_window(values))


def read_dicom(
    path: str | os.PathLike, data: bytes | None = None, max_pixels: int | None = None
) -> list[ClinicalSlice]:
    """The slices of a DICOM file (one per frame), windowed as the module says.

    Args:
        path: the file (or, with ``data``, the name its bytes are known by, e.g. an upload's).
        data: the file's bytes, when they are not read from ``path``.
        max_pixels: refuse frames larger than this (rows x columns), read from the header before any pixel.

    Raises:
        ValueError: not a DICOM file, no pixel data, compressed pixel data without a decoder, frames over
            ``max_pixels``, or pydicom missing; the message names the file and the fix.
    """
    path = Path(path)
    pydicom = _need("pydicom", path)
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_modality_lut

    try:
        ds = pydicom.dcmread(io.BytesIO(data) if data is not None else path)
    except (InvalidDicomError, OSError, EOFError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path}: not a readable DICOM file ({' '.join(str(error).split())[:200]})") from None
    rows, columns = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    if max_pixels is not None and rows * columns > max_pixels:
        raise ValueError(
            f"{path}: {columns} x {rows} pixels per frame is larger than {max_pixels / 1e6:g} megapixels: predict it "
            "with `python -m brain_mtl predict-images`"
        )
    if "PixelData" not in ds:
        raise ValueError(f"{path}: the DICOM file holds no image (no PixelData): a report or a structured document?")
    try:
        pixels = ds.pixel_array
    except (NotImplementedError, RuntimeError, ValueError, AttributeError) as error:
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        name = getattr(syntax, "name", syntax) or "unknown"
        raise ValueError(
            f"{path}: cannot decode its pixel data (transfer syntax {name}): {' '.join(str(error).split())[:200]}. "
            "Fix: install a pydicom pixel handler for it (pip install pylibjpeg pylibjpeg-libjpeg "
            "pylibjpeg-openjpeg), or convert the file to uncompressed DICOM"
        ) from None
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    color = int(ds.get("SamplesPerPixel", 1) or 1) == 3
    if not color:
        stack = np.asarray(pixels).reshape((frames, *np.asarray(pixels).shape[-2:]))
        values = apply_modality_lut(stack, ds).astype(np.float64)
        gray = _dicom_window(ds, values)
        if photometric == "MONOCHROME1":
            gray = 255 - gray
        images = [_rgb(frame) for frame in gray]
    else:
        stack = np.asarray(pixels).reshape((frames, *np.asarray(pixels).shape[-3:]))
        low, high = (0.0, 255.0) if stack.dtype == np.uint8 else (float(stack.min()), float(stack.max()))
        images = [np.ascontiguousarray(window_to_uint8(frame, low, high)) for frame in stack]
    uid = str(ds.get("SOPInstanceUID", "")) or None
    if frames == 1:
        return [ClinicalSlice(images[0], str(path), None, uid)]
    return [ClinicalSlice(image, f"{path}#frame{k}", k, uid) for k, image in enumerate(images)]


def _slice_axis(nib: Any, image: Any) -> int:
    """The through-plane voxel axis: the largest spacing, or (isotropic) the one closest to foot-to-head."""
    zooms = np.asarray(image.header.get_zooms()[:3], dtype=np.float64)
    order = np.argsort(zooms)
    if zooms[order[2]] > 1.1 * zooms[order[1]]:
        return int(order[2])
    return int(np.argmax(np.abs(image.affine[2, :3]) / np.maximum(zooms, 1e-12)))


def _to_display(slice_ras: np.ndarray) -> np.ndarray:
    """A slice of a RAS+ volume (first in-plane axis, second) as read: the second axis up, the first mirrored."""
    return np.ascontiguousarray(slice_ras.T[::-1, ::-1])


def _from_display(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(image[::-1, ::-1].T)


def read_nifti_bytes(name: str, data: bytes, axis: int | None = None) -> NiftiVolume:
    """:func:`read_nifti` of a file's bytes (an upload), ``name`` ending in ``.nii`` or ``.nii.gz``.

    Raises:
        ValueError: as :func:`read_nifti`; the message names ``name``.
    """
    suffix = ".nii.gz" if name.lower().endswith(".gz") else ".nii"
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"upload{suffix}"
        path.write_bytes(data)
        try:
            volume = read_nifti(path, axis)
        except ValueError as error:
            raise ValueError(str(error).replace(str(path), name)) from None
    volume.path = Path(name)
    for item in volume.slices:
        item.source = item.source.replace(str(path), name)
    return volume


def read_nifti(path: str | os.PathLike, axis: int | None = None) -> NiftiVolume:
    """Every slice of a NIfTI volume along ``axis`` (default: the through-plane axis), scaled as the module says.

    Args:
        path: a ``.nii`` or ``.nii.gz`` file holding one 3D volume (a 4D file with one volume is taken as 3D).
        axis: the voxel axis of the stored array to slice along (0, 1 or 2).

    Raises:
        ValueError: not a readable NIfTI file, not 3D, an axis out of range, or nibabel missing.
    """
    path = Path(path)
    nib = _need("nibabel", path)
    try:
        image = nib.load(str(path))
        data = np.asanyarray(image.dataobj, dtype=np.float32)
    except (OSError, EOFError, ValueError, TypeError, nib.filebasedimages.ImageFileError) as error:
        raise ValueError(f"{path}: not a readable NIfTI file ({' '.join(str(error).split())[:200]})") from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ValueError(
            f"{path}: a {data.ndim}D image of shape {data.shape}; predict-images reads 3D volumes (one volume of a "
            "4D series: save it on its own, e.g. nibabel's image.slicer[..., k])"
        )
    if not np.isfinite(data).all():
        data = np.nan_to_num(data, nan=0.0, posinf=0.0, neginf=0.0)
    if axis is None:
        axis = _slice_axis(nib, image)
    if axis not in (0, 1, 2):
        raise ValueError(f"{path}: slice axis {axis} is not 0, 1 or 2")
    gray = window_to_uint8(data, *percentile_window(data))
    ornt = nib.orientations.io_orientation(image.affine)  # voxel axes -> RAS+ (flips and a permutation only)
    ras = nib.orientations.apply_orientation(gray, ornt)
    world_axis = int(ornt[axis, 0])
    slices = []
    for k in range(ras.shape[world_axis]):
        plane = _to_display(np.take(ras, k, axis=world_axis))
        # Index k of the RAS+ volume is voxel index k of the stored one, or its mirror when that axis was flipped.
        stored = k if ornt[axis, 1] > 0 else ras.shape[world_axis] - 1 - k
        slices.append(ClinicalSlice(_rgb(plane), f"{path}#slice{stored}", stored))
    slices.sort(key=lambda s: s.index)
    return NiftiVolume(path, slices, axis, tuple(int(n) for n in data.shape), np.asarray(image.affine), image.header)


def write_nifti_mask(volume: NiftiVolume, masks: list[np.ndarray], path: str | os.PathLike) -> Path:
    """Write per-slice masks (display orientation, as predicted) as a uint8 0/1 volume with the input's grid.

    Args:
        volume: from :func:`read_nifti`.
        masks: one ``(H, W)`` mask per slice of ``volume.slices``, in that order.
        path: the file to write (``.nii.gz``).

    Returns:
        The path written.
    """
    nib = _need("nibabel", volume.path)
    ornt = nib.orientations.io_orientation(volume.affine)
    world_axis = int(ornt[volume.axis, 0])
    ras_shape = tuple(int(n) for n in nib.orientations.apply_orientation(np.zeros(volume.shape, np.uint8), ornt).shape)
    ras = np.zeros(ras_shape, dtype=np.uint8)
    for item, mask in zip(volume.slices, masks, strict=True):
        k = item.index if ornt[volume.axis, 1] > 0 else ras_shape[world_axis] - 1 - item.index
        index = [slice(None)] * 3
        index[world_axis] = k
        ras[tuple(index)] = _from_display(np.asarray(mask) > 0).astype(np.uint8)
    back = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt(("R", "A", "S")), ornt)
    stored = nib.orientations.apply_orientation(ras, back).astype(np.uint8)
    header = volume.header.copy() if volume.header is not None else None
    out = nib.Nifti1Image(stored, volume.affine, header)
    out.set_data_dtype(np.uint8)
    out.header["scl_slope"], out.header["scl_inter"] = 1.0, 0.0
    path = Path(path)
    data = out.to_bytes()
    atomic_write_bytes(path, gzip.compress(data, mtime=0) if path.name.lower().endswith(".gz") else data)
    return path
