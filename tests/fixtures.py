"""The one set of tiny data and checkpoints every test folder builds on.

- :func:`tiny_dataset`: a synthetic BRISC-layout folder, generated once per (size, seed) and session and shared
  read-only (the ``tiny_datasets`` fixture of ``tests/conftest.py`` hands it out). Tests that damage a folder copy it
  or build their own with ``tests/data/data_helpers.TreeBuilder``.
- :func:`write_dicom`: a minimal uncompressed DICOM file (pydicom), for the clinical readers and the app.
- :func:`write_checkpoint`: a Lightning checkpoint of a tiny network with the keys Lightning writes, written in
  milliseconds, optionally with its weights edited (known outputs, randomised BatchNorm statistics).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning
import numpy as np
import torch

from brain_mtl.data.synthetic import generate_synthetic_dataset
from brain_mtl.task import BrainTumorModule

TINY_NETWORK = {"base_channels": 4, "depth": 2, "classifier_hidden": 8}
"""The architecture of :func:`write_checkpoint`'s network (a few thousand weights)."""


def tiny_dataset(root: Path, train: int, test: int, seed: int, duplicates: bool = True) -> Path:
    """Generate a synthetic BRISC-layout dataset of ``train`` / ``test`` classification images into ``root``."""
    generate_synthetic_dataset(root, train, test, seed=seed, duplicates=duplicates)
    return root


def write_checkpoint(
    path: Path,
    *,
    seed: int = 0,
    edit: Callable[[BrainTumorModule], None] | None = None,
    datamodule_hparams: dict[str, Any] | None = None,
    **extra: Any,
) -> Path:
    """Write a Lightning-format checkpoint of an untrained tiny :class:`BrainTumorModule`.

    Args:
        path: the file to write.
        seed: seed of the random weights.
        edit: changes the module's weights in place before it is saved.
        datamodule_hparams: the datamodule's saved settings (default: 32 px, no letterbox).
        **extra: more top-level keys (``epoch``, ``global_step``, ...).
    """
    torch.manual_seed(seed)
    module = BrainTumorModule(**TINY_NETWORK)
    if edit is not None:
        with torch.no_grad():
            edit(module)
    checkpoint = {
        "state_dict": module.state_dict(),
        "hyper_parameters": dict(module.hparams),
        "pytorch-lightning_version": lightning.__version__,
        "datamodule_hyper_parameters": datamodule_hparams or {"image_size": 32, "keep_aspect": False},
        **extra,
    }
    torch.save(checkpoint, path)
    return path


def write_dicom(path, pixels, photometric="MONOCHROME2", slope=1.0, intercept=0.0, window=None, uid="1.2.3.4"):
    """A minimal uncompressed DICOM file (explicit VR little endian) of uint16 pixels: (H, W) or (frames, H, W)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = MRImageStorage, uid, "MR"
    pixels = np.asarray(pixels, dtype=np.uint16)
    if pixels.ndim == 3:
        ds.NumberOfFrames = pixels.shape[0]
    ds.Rows, ds.Columns = pixels.shape[-2:]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path
