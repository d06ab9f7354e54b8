"""The records of an indexed dataset: images, file checks, problems, and the index that holds them.

:func:`brain_mtl.data.index.index_dataset` builds them; the checks, the duplicate search, the validation split, the
summary and the DataModule read them. Plain frozen dataclasses, no file access.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from brain_mtl.data.errors import DatasetError
from brain_mtl.data.layout import SPLITS

__all__ = ["DatasetIndex", "FileCheck", "FoundImage", "ImageRecord", "Problem", "Severity"]

Severity = Literal["error", "warning"]
"""How bad a :class:`Problem` is: ``"error"`` stops training, ``"warning"`` is only reported."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset folder.

    Attributes:
        kind: short machine-readable name, e.g. ``"missing_mask"``, ``"unknown_class"``.
        path: the file or folder concerned (None when the problem concerns no single path).
        message: what is wrong.
        fix: what the user should do about it.
        severity: ``"error"`` stops training; ``"warning"`` is only reported.
    """

    kind: str
    path: Path | None
    message: str
    fix: str
    severity: Severity = "error"

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path is not None else ""
        return f"{where}{self.message} Fix: {self.fix}"


@dataclass(frozen=True)
class FileCheck:
    """What reading one file found (:func:`brain_mtl.data.inspection.inspect_file`).

    Attributes:
        digest: content hash (:func:`brain_mtl.data.duplicates.file_digest`); None when the file cannot be read.
        height: image height in pixels as stored (0 when not decoded).
        width: image width in pixels as stored (0 when not decoded).
        channels: channels as stored (0 when not decoded).
        dtype: pixel type as decoded, e.g. ``"uint8"``.
        mask_area: tumour fraction of a mask file, after thresholding; None for images.
        phash: 64-bit perceptual hash of an image (:func:`brain_mtl.data.near_duplicates.perceptual_hash`); None
            for masks and files not decoded.
        error_kind: why the file is unusable, None when it is usable: ``"unreadable"`` (cannot be opened, or
            empty), ``"not_an_image"`` (the content has no image signature, whatever its name), ``"truncated"``
            (the data ends before its end marker), ``"unsupported"`` (the header does not say the size, declares
            several TIFF pages or more than :data:`~brain_mtl.data.headers.MAX_FILE_PIXELS`: never decoded) or
            ``"corrupt"`` (the decoder fails, or a JPEG decodes with libjpeg's "Corrupt JPEG data" warning: part of
            it comes out grey).
        error: the problem in words.
        format: what the content is (:func:`brain_mtl.data.io.sniff_format`): ``"jpeg"``, ``"png"``, ...; None:
            not an image.
        fix: what to do about the error.
        notes: warnings about a usable file, ``(kind, message, fix)``: ``"wrong_extension"`` (e.g. a JPEG named
            ``.png``; it loads, as files are decoded by content) and ``"decoder_warning"`` (a non-JPEG decoder
            printed a warning).
        decoder_messages: what the decoder printed to stderr while decoding this file (strict decoding).
    """

    digest: str | None = None
    height: int = 0
    width: int = 0
    channels: int = 0
    dtype: str = ""
    mask_area: float | None = None
    phash: int | None = None
    error_kind: str | None = None
    error: str | None = None
    format: str | None = None
    fix: str | None = None
    notes: tuple[tuple[str, str, str], ...] = ()
    decoder_messages: str = ""


@dataclass(frozen=True)
class ImageRecord:
    """One image of the dataset (a classification image or a segmentation image with its mask).

    Attributes:
        path: the image file.
        label: class index (:data:`brain_mtl.classes.CLASS_NAMES` order); -1 if it could not be determined.
        split: ``"train"``, ``"val"`` or ``"test"`` (``"val"`` also after
            :func:`~brain_mtl.data.split.carve_validation`).
        task: ``"classification"`` or ``"segmentation"``.
        view: ``"ax"``, ``"co"``, ``"sa"`` from the file name, or ``"?"``.
        mask_path: the mask file of a segmentation image, else None.
        digest: content hash of the image file (equal digests = byte-identical files).
        height: image height in pixels as stored.
        width: image width in pixels as stored.
        channels: channels as stored (1 gray, 3 RGB, 4 RGBA).
        mask_area: tumour fraction of the mask (segmentation images), else None.
        phash: 64-bit perceptual hash of the pixels (near-duplicates); None when the index did not decode them.
        patient: the patient id from the folder's ``manifest.csv`` (column ``patient_id``), else None; images of
            one patient are kept on one side of every split and fold.
    """

    path: Path
    label: int
    split: str
    task: str
    view: str = "?"
    mask_path: Path | None = None
    digest: str = ""
    height: int = 0
    width: int = 0
    channels: int = 0
    mask_area: float | None = None
    phash: int | None = None
    patient: str | None = None

    @property
    def stem(self) -> str:
        """File name without extension: the key that pairs a segmentation image with its classification copy."""
        return self.path.stem


@dataclass
class DatasetIndex:
    """Every image found under a dataset root, and every problem found with it.

    Attributes:
        root: the dataset root.
        records: classification and segmentation images, sorted by task, split and path.
        problems: errors and warnings, in the order they were found.
        has_val_split: the folder has its own ``val`` split (so none is carved from train).
        carved_validation: ``val`` was carved from ``train`` by :func:`~brain_mtl.data.split.carve_validation`.
    """

    root: Path
    records: list[ImageRecord] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    has_val_split: bool = False
    carved_validation: bool = False

    @property
    def errors(self) -> list[Problem]:
        """Problems that make the folder unusable."""
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        """Problems that are only reported."""
        return [p for p in self.problems if p.severity == "warning"]

    def classification(self, split: str) -> list[ImageRecord]:
        """Classification images of a split."""
        return [r for r in self.records if r.task == "classification" and r.split == split]

    def segmentation(self, split: str) -> list[ImageRecord]:
        """Segmentation images (with masks) of a split."""
        return [r for r in self.records if r.task == "segmentation" and r.split == split]

    @property
    def splits(self) -> list[str]:
        """Splits that hold at least one image, in ``train, val, test`` order."""
        present = {r.split for r in self.records}
        return [s for s in SPLITS if s in present]

    def raise_for_errors(self, allowed: Sequence[str] = ()) -> None:
        """Raise one :class:`DatasetError` listing every error (one per line), if there is any.

        Args:
            allowed: error kinds that do not count here (``missing_train`` for a folder only tested on).
        """
        errors = [p for p in self.errors if p.kind not in allowed]
        if errors:
            lines = "\n".join(f"  - {p}" for p in errors)
            raise DatasetError(
                f"{len(errors)} problem(s) in the dataset at {self.root} "
                f"(run `python -m brain_mtl check-data --root {self.root}` for the full report):\n{lines}"
            )


@dataclass(frozen=True)
class FoundImage:
    """An image found in the folders, before its file is read (what :class:`ImageRecord` is built from).

    Attributes:
        path: the image file.
        label: class index from the folder (classification) or the file-name code (segmentation); -1 if unknown.
        split: ``"train"``, ``"val"`` or ``"test"``.
        task: ``"classification"`` or ``"segmentation"``.
        view: view code from the file name, or ``"?"``.
        mask_path: the paired mask of a segmentation image, else None.
    """

    path: Path
    label: int
    split: str
    task: str
    view: str = "?"
    mask_path: Path | None = None
