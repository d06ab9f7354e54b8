"""The files a prediction run writes: masks, overlays, Grad-CAM overlays and the ``predictions`` tables."""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from brain_mtl.classes import CLASS_NAMES
from brain_mtl.errors import OutputFolderError, WriteError
from brain_mtl.files import atomic_write_text, csv_cell, json_dumps
from brain_mtl.inference.prediction import Failure, Prediction
from brain_mtl.viz import draw_outline, heatmap_overlay, overlay, put_text, write_png

__all__ = [
    "OUTPUT_SUFFIXES",
    "OutputFolderError",
    "OutputWriter",
    "check_output_dir",
    "clear_previous_run",
    "previous_run_files",
    "safe_stem",
]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")

OUTPUT_SUFFIXES = ("_mask.png", "_overlay.png", "_gradcam.png", "_mask.nii.gz")
"""Endings of the per-image files an :class:`OutputWriter` writes (``<stem>_mask.png``, ...)."""


def safe_stem(source: str) -> str:
    """A file-name stem from an input name that cannot contain a path: no separators, no leading dots.

    A frame or slice of a clinical file (``scan.dcm#frame2``, ``brain.nii.gz#slice7``) gets its part after ``#``
    appended (``scan_frame2``, ``brain_slice7``).
    """
    name, _, part = Path(str(source).replace("\\", "/")).name.partition("#")
    name = name[:-3] if name.lower().endswith(".nii.gz") else name
    stem = name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name
    stem = f"{stem}_{part}" if part else stem
    stem = _UNSAFE.sub("_", stem).lstrip(".-_")[:120]
    return stem or "image"


def previous_run_files(output_dir: str | os.PathLike, file_prefix: str = "predictions") -> list[Path]:
    """The files an earlier run of :class:`OutputWriter` wrote into ``output_dir``, as its JSON file lists them.

    Read from ``<file_prefix>.json`` (its ``files`` list; older files: each row's ``mask_file`` and the
    ``<stem>_overlay.png`` / ``<stem>_gradcam.png`` beside it), plus ``<file_prefix>.csv`` and the JSON file
    itself. Only plain files directly in the folder whose names end like an output (:data:`OUTPUT_SUFFIXES`) are
    returned, so a hand-edited list cannot name anything else. Empty when there is no readable JSON file.
    """
    folder = Path(output_dir)
    json_path = folder / f"{safe_stem(file_prefix)}.json"
    try:
        payload = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(payload, dict):
        return []
    names = payload.get("files")
    if not isinstance(names, list):
        names = []
        for row in payload.get("predictions") or []:
            if isinstance(row, dict):
                names.append(row.get("mask_file"))
                names += [f"{row.get('stem')}{suffix}" for suffix in OUTPUT_SUFFIXES[1:]]
    found = []
    for name in names:
        if not isinstance(name, str) or Path(name).name != name or name.startswith(".") or "\\" in name:
            continue
        if name.endswith(OUTPUT_SUFFIXES):
            found.append(folder / name)
    found += [folder / f"{safe_stem(file_prefix)}.csv", json_path]
    return [path for path in dict.fromkeys(found) if path.is_file() and not path.is_symlink()]


def check_output_dir(output_dir: str | os.PathLike, overwrite: bool, *, option: str = "--overwrite") -> None:
    """Refuse an output folder that a run must not write into; touches nothing.

    Args:
        output_dir: the folder a run is about to write (it may not exist yet).
        overwrite: whether the run may write into a folder that already holds files (see
            :func:`clear_previous_run`).
        option: how the user turns ``overwrite`` on, named in the message.

    Raises:
        OutputFolderError: ``output_dir`` is an existing file, or a folder holding files while ``overwrite`` is
            off; the message names the path and the fix.
    """
    folder = Path(output_dir)
    if folder.exists() and not folder.is_dir():
        raise OutputFolderError(f"output {folder} is an existing file, not a folder; choose a folder")
    if folder.is_dir() and not overwrite and any(folder.iterdir()):
        raise OutputFolderError(
            f"output folder {folder} is not empty; pass {option} to replace its results, or choose another folder"
        )


def clear_previous_run(output_dir: str | os.PathLike, file_prefix: str = "predictions") -> tuple[int, int]:
    """Delete the files an earlier run listed in its ``<file_prefix>.json`` (:func:`previous_run_files`).

    What overwriting means for ``predict-images --overwrite`` and ``PredictionWriter(overwrite=True)``: the old
    run's results go, so they cannot mix with the new run's; any other file is left as it is.

    Args:
        output_dir: the output folder (nothing happens when it does not exist).
        file_prefix: prefix of the earlier run's tables.

    Returns:
        ``(removed, others)``: how many files were deleted, and how many other entries the folder still holds.
    """
    folder = Path(output_dir)
    if not folder.is_dir():
        return 0, 0
    removed = 0
    for path in previous_run_files(folder, file_prefix):
        path.unlink()
        removed += 1
    return removed, sum(1 for _ in folder.iterdir())


class OutputWriter:
    """Writes prediction files into one folder: masks, overlays, Grad-CAM overlays, ``predictions.csv/.json``.

    Per image ``<stem>_mask.png`` (0/255, original size), ``<stem>_overlay.png`` (predicted mask tinted and
    outlined, caption with the class and its probability) and, with Grad-CAM, ``<stem>_gradcam.png``. Stems come
    from the input file names, reduced to ``[A-Za-z0-9._-]`` and made unique (``scan``, ``scan_2``, ...), so no
    output name can leave the folder or overwrite another input's output. ``predictions.csv`` gets one row per
    image as it is written; ``predictions.json`` (rows plus the ``failed`` inputs, the settings and ``files``,
    the image files written) on :meth:`close`.

    Both tables are strict: no ``NaN`` or ``Infinity``. :meth:`write` refuses a prediction whose class
    probabilities are not finite (the caller records it with :meth:`fail`), and non-finite numbers in
    ``settings`` are written as ``null``.

    Args:
        output_dir: the folder (created).
        class_names: names of the classes, in index order (CSV columns ``p_<name>``).
        overlays: write ``<stem>_overlay.png``.
        settings: extra JSON-ready information stored under ``settings`` in ``predictions.json``.
        file_prefix: prefix of the CSV/JSON names (``predictions``).
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        class_names: Sequence[str] = CLASS_NAMES,
        *,
        overlays: bool = True,
        settings: dict[str, Any] | None = None,
        file_prefix: str = "predictions",
    ) -> None:
        self.output_dir = Path(output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self._root = self.output_dir.resolve()
        self.class_names = tuple(class_names)
        self.overlays = overlays
        self.settings = dict(settings or {})
        self.rows: list[dict[str, Any]] = []
        self.failures: list[Failure] = []
        self._used: set[str] = set()
        self.files: list[str] = []
        self.not_read: list[str] = []
        """Files of the input folders that were not read (neither images nor clinical files), listed in the JSON."""
        self.csv_path = self._path(f"{safe_stem(file_prefix)}.csv")
        self.json_path = self._path(f"{safe_stem(file_prefix)}.json")
        if self.csv_path.is_symlink():  # opening it would write through the link into whatever it points at
            self.csv_path.unlink()
        try:
            self._csv_file = self.csv_path.open("w", newline="", encoding="utf-8")
        except OSError as error:
            raise WriteError(f"cannot write {self.csv_path}: {error.strerror or error}.") from error
        self._csv = csv.DictWriter(self._csv_file, fieldnames=self.fieldnames)
        self._csv.writeheader()
        self._closed = False

    @property
    def fieldnames(self) -> list[str]:
        """CSV columns."""
        return [
            "file",
            "stem",
            "class",
            "class_index",
            "probability",
            *(f"p_{name}" for name in self.class_names),
            "mask_area_px",
            "mask_fraction",
            "height",
            "width",
            "mask_file",
            "slice",
            "sop_instance_uid",
        ]

    def _path(self, name: str) -> Path:
        target = self.output_dir / name
        if target.parent.resolve() != self._root or name in (".", ".."):  # a link named so is replaced, not followed
            raise ValueError(f"output name {name!r} would leave {self.output_dir}")
        return target

    def _unique_stem(self, source: str) -> str:
        base = safe_stem(source)
        stem, n = base, 1
        while stem.lower() in self._used:  # lower(): case-insensitive file systems
            n += 1
            stem = f"{base}_{n}"
        self._used.add(stem.lower())
        return stem

    def write(
        self,
        prediction: Prediction,
        *,
        slice_index: int | None = None,
        sop_instance_uid: str | None = None,
        volume_mask: str | None = None,
    ) -> dict[str, Any]:
        """Write one image's files and its CSV row; returns the row.

        Args:
            prediction: the image's prediction.
            slice_index: the slice or frame of a clinical file the image is (column ``slice``).
            sop_instance_uid: the DICOM SOP Instance UID of the file (column ``sop_instance_uid``).
            volume_mask: a slice of a volume whose mask is one file (``<name>_mask.nii.gz``, written by the caller
                with :meth:`add_file`): no per-image files, and ``mask_file`` names that file.

        Raises:
            ValueError: the class probabilities are not finite (nothing is written for the image).
        """
        probs = np.asarray(prediction.class_probs, dtype=np.float64).reshape(-1)
        if not np.isfinite(probs).all():
            raise ValueError(
                f"{prediction.source}: class probabilities {probs.tolist()} are not finite; not written (the "
                "network is broken or overflows on this input)"
            )
        stem = self._unique_stem(prediction.source)
        mask_path = self._path(volume_mask or f"{stem}_mask.png")
        if volume_mask is None:
            write_png(mask_path, prediction.mask * np.uint8(255))
            self.files.append(mask_path.name)
        if self.overlays and volume_mask is None:
            caption = [f"{prediction.class_name} {prediction.probability:.2f}", f"mask {prediction.mask_area} px"]
            overlay_path = self._path(f"{stem}_overlay.png")
            write_png(overlay_path, overlay(prediction.image, prediction.mask, None, caption))
            self.files.append(overlay_path.name)
        if prediction.gradcam is not None:
            target = prediction.gradcam_class if prediction.gradcam_class is not None else prediction.class_index
            heat = heatmap_overlay(prediction.image, prediction.gradcam)
            heat = draw_outline(heat, prediction.mask, (255, 255, 255))
            caption = [f"Grad-CAM: {prediction.class_names[target]}", f"p={float(prediction.class_probs[target]):.2f}"]
            gradcam_path = self._path(f"{stem}_gradcam.png")
            write_png(gradcam_path, put_text(heat, caption))
            self.files.append(gradcam_path.name)
        height, width = prediction.size
        row: dict[str, Any] = {
            "file": prediction.source,
            "stem": stem,
            "class": prediction.class_name,
            "class_index": prediction.class_index,
            "probability": round(prediction.probability, 6),
            **{f"p_{n}": round(float(p), 6) for n, p in zip(self.class_names, prediction.class_probs, strict=True)},
            "mask_area_px": prediction.mask_area,
            "mask_fraction": round(prediction.mask_area / max(1, height * width), 6),
            "height": height,
            "width": width,
            "mask_file": mask_path.name,
            "slice": slice_index,
            "sop_instance_uid": sop_instance_uid,
        }
        try:
            self._csv.writerow({key: csv_cell(value) for key, value in row.items()})
            self._csv_file.flush()
        except OSError as error:
            raise WriteError(
                f"cannot write {self.csv_path}: {error.strerror or error} (a full disk?). The rows before it are "
                "in the file."
            ) from error
        self.rows.append(row)
        return row

    def volume_mask_path(self, source: str) -> Path:
        """A new ``<stem>_mask.nii.gz`` in the folder for a volume's mask (listed in ``files`` by :meth:`add_file`)."""
        stem = self._unique_stem(source)
        return self._path(f"{stem}_mask.nii.gz")

    def add_file(self, path: Path) -> None:
        """List a file the caller wrote into the folder (``files`` in the JSON; ``--overwrite`` removes it)."""
        self.files.append(path.name)

    def fail(self, source: str, error: str) -> None:
        """Record an input that could not be predicted (listed in ``predictions.json`` under ``failed``)."""
        self.failures.append(Failure(str(source), str(error)))

    def close(self) -> None:
        """Finish the CSV and write ``predictions.json``."""
        if self._closed:
            return
        self._closed = True
        try:
            self._csv_file.close()
        except OSError as error:
            raise WriteError(f"cannot write {self.csv_path}: {error.strerror or error} (a full disk?).") from error
        payload = {
            "settings": self.settings,
            "class_names": list(self.class_names),
            "predictions": [
                {**row, "probabilities": {n: row[f"p_{n}"] for n in self.class_names}} for row in self.rows
            ],
            "failed": [{"file": f.source, "error": f.error} for f in self.failures],
            "not_read": list(self.not_read),
            "files": list(self.files),
        }
        # Strict JSON: rows are finite (checked in write); a missing setting is null, never NaN.
        atomic_write_text(self.json_path, json_dumps(payload, indent=2))

    def __enter__(self) -> OutputWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
