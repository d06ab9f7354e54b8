"""Other public datasets written in the BRISC layout, so that every command reads them.

:func:`convert_figshare`: Cheng et al.'s Figshare brain-tumour set (3,064 T1-weighted contrast-enhanced slices of 233
patients, meningioma / glioma / pituitary, a tumour mask for every slice; MATLAB v7.3 ``.mat`` files, read with
h5py). Each file's ``cjdata`` holds ``image`` (int16), ``label`` (1 meningioma, 2 glioma, 3 pituitary), ``PID`` (the
patient id as characters) and ``tumorMask``, all stored transposed as MATLAB stores arrays (column-major). The
slice is written as an 8-bit PNG (its 0.5th to 99.5th percentile onto 0..255, as the clinical readers do), in the
classification and the segmentation task, its mask as a 0/255 PNG, and ``manifest.csv`` gives every image's
patient, so that validation splits and folds keep each patient on one side.

:func:`convert_folders`: a classification tree ``<split>/<class>/<images>`` (the 7,023-image Kaggle set's
``Training`` / ``Testing``) copied into the classification task, with the class spellings mapped (no masks: for
classification, e.g. as an external test set).

Both refuse to write into a folder that holds anything else, list the files they could not read (the others are
written), and can be run again: a finished conversion is recognised (``convert.json``) and left as it is, an
interrupted one is completed.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from brain_mtl.classes import CLASS_NAMES
from brain_mtl.data.clinical import percentile_window, window_to_uint8
from brain_mtl.data.io import IMAGE_EXTENSIONS
from brain_mtl.data.layout import (
    CLASSIFICATION_TASK,
    IMAGES_DIR,
    MANIFEST,
    MASKS_DIR,
    SEGMENTATION_TASK,
    known_spellings,
    resolve_class,
)
from brain_mtl.files import atomic_write_text
from brain_mtl.viz import write_png

__all__ = [
    "CONVERT_MARKER",
    "FIGSHARE_LABELS",
    "ConversionError",
    "ConversionResult",
    "convert_figshare",
    "convert_folders",
]

CONVERT_MARKER = "convert.json"
"""Written last in the output folder: what was converted from where, and what could not be read."""

FIGSHARE_LABELS = {1: "meningioma", 2: "glioma", 3: "pituitary"}
"""The Figshare set's ``cjdata.label`` values -> brain_mtl class names."""

_FOLDER_SPLITS = {"training": "train", "train": "train", "testing": "test", "test": "test", "val": "val"}


class ConversionError(ValueError):
    """The conversion cannot start: the message names the folder and the fix."""


@dataclass
class ConversionResult:
    """What a conversion did.

    Attributes:
        output: the BRISC-layout folder.
        converted: images written (or found written by an earlier, interrupted run).
        failed: ``(file, reason)`` for every input that could not be read.
        already_done: the folder held a finished conversion of the same input: nothing was written.
    """

    output: Path
    converted: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    already_done: bool = False


def _start(output: Path, kind: str, source: Path) -> bool:
    """Check the output folder; True when it already holds this finished conversion."""
    marker = output / CONVERT_MARKER
    if marker.is_file():
        try:
            done = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            done = {}
        if done.get("kind") == kind and done.get("input") == str(source.resolve()) and done.get("complete"):
            return True
    if output.is_dir() and any(output.iterdir()) and not (output / ".converting").is_file():
        raise ConversionError(
            f"{output}: the folder holds files that this conversion did not write; refusing to write into it. "
            "Give a new or empty --output folder."
        )
    output.mkdir(parents=True, exist_ok=True)
    atomic_write_text(output / ".converting", json.dumps({"kind": kind, "input": str(source.resolve())}))
    return False


def _finish(output: Path, kind: str, source: Path, result: ConversionResult, extra: dict | None = None) -> None:
    content = {
        "kind": kind,
        "input": str(source.resolve()),
        "converted": result.converted,
        "failed": [{"file": f, "error": e} for f, e in result.failed],
        "complete": True,
        **(extra or {}),
    }
    atomic_write_text(output / CONVERT_MARKER, json.dumps(content, indent=2) + "\n")
    (output / ".converting").unlink(missing_ok=True)


def _write_once(path: Path, image: np.ndarray) -> None:
    """Write a PNG atomically unless an earlier run already wrote it (atomic writes leave no partial file)."""
    if not path.is_file():
        write_png(path, image)


def _read_mat(path: Path) -> tuple[np.ndarray, int, str, np.ndarray]:
    """``(image, label, patient id, mask)`` of one Figshare file, in MATLAB's (row, column) orientation."""
    try:
        import h5py
    except ImportError:
        raise ValueError(
            f"{path}: reading MATLAB v7.3 files needs h5py: pip install 'brain_mtl[clinical]' (or pip install h5py)"
        ) from None
    try:
        with h5py.File(path, "r") as handle:
            data = handle["cjdata"]
            image = np.asarray(data["image"]).T
            label = int(np.asarray(data["label"]).reshape(-1)[0])
            patient = "".join(chr(int(c)) for c in np.asarray(data["PID"]).reshape(-1) if int(c)).strip()
            mask = np.asarray(data["tumorMask"]).T
    except (OSError, KeyError, ValueError, TypeError, IndexError) as error:
        raise ValueError(f"not a Figshare cjdata file ({' '.join(str(error).split())[:160]})") from None
    if label not in FIGSHARE_LABELS:
        raise ValueError(f"cjdata.label is {label}, not 1 (meningioma), 2 (glioma) or 3 (pituitary)")
    if image.ndim != 2 or mask.shape != image.shape:
        raise ValueError(f"image {image.shape} and tumorMask {mask.shape} are not one 2D slice and its mask")
    return image, label, patient, mask


def convert_figshare(
    input_dir: str | os.PathLike, output_dir: str | os.PathLike, split: str = "train"
) -> ConversionResult:
    """Write the Figshare set's ``.mat`` files as a BRISC-layout folder with a patient manifest.

    Args:
        input_dir: folder holding the ``.mat`` files (searched recursively: the download has four zip parts).
        output_dir: new or empty folder (or one this function was interrupted in).
        split: the split written: ``train`` (carve validation and folds from it) or ``test`` (external
            validation of a model trained elsewhere).

    Returns:
        The :class:`ConversionResult`.

    Raises:
        ConversionError: no ``.mat`` file in ``input_dir``, a split other than train or test, or an output folder
            that holds other files.
    """
    source, output = Path(input_dir), Path(output_dir)
    if split not in ("train", "test"):
        raise ConversionError(f"--split must be train or test, got {split!r}")
    files = sorted(source.rglob("*.mat"), key=lambda p: (len(p.stem), p.stem, str(p)))
    if not files:
        raise ConversionError(f"{source}: no .mat files found (the Figshare set's files are 1.mat ... 3064.mat)")
    result = ConversionResult(output)
    if _start(output, "figshare", source):
        result.already_done = True
        return result
    rows = []
    for path in files:
        try:
            image, label, patient, mask = _read_mat(path)
        except ValueError as error:
            result.failed.append((str(path), str(error) if str(path) in str(error) else f"{path}: {error}"))
            continue
        name = f"figshare_{path.stem}.png"
        png = window_to_uint8(image, *percentile_window(image))
        class_name = FIGSHARE_LABELS[label]
        classification = output / CLASSIFICATION_TASK / split / class_name / name
        _write_once(classification, png)
        _write_once(output / SEGMENTATION_TASK / split / IMAGES_DIR / name, png)
        _write_once(output / SEGMENTATION_TASK / split / MASKS_DIR / name, (mask > 0).astype(np.uint8) * 255)
        rows.append(
            {
                "image": classification.relative_to(output).as_posix(),
                "patient_id": patient or f"unknown_{path.stem}",
                "label": class_name,
                "source": path.name,
            }
        )
        result.converted += 1
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["image", "patient_id", "label", "source"])
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(output / MANIFEST, buffer.getvalue())
    patients = len({row["patient_id"] for row in rows})
    _finish(output, "figshare", source, result, {"split": split, "patients": patients})
    return result


def convert_folders(
    input_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    class_name_map: Mapping[str, str] | None = None,
) -> ConversionResult:
    """Copy a ``<split>/<class>/`` image tree into the classification task of a BRISC-layout folder.

    ``Training`` / ``train`` become ``train``, ``Testing`` / ``test`` become ``test`` (``val`` stays); class folders
    are read with brain_mtl's spellings plus ``class_name_map`` (e.g. ``{"notumor": "no_tumor"}``). The result has
    no segmentation task: a folder to test classification on (``test`` accepts it; fit needs masks).

    Raises:
        ConversionError: no split folder, a class folder no spelling names (before anything is written), or an
            output folder that holds other files.
    """
    source, output = Path(input_dir), Path(output_dir)
    splits = (
        [d for d in sorted(source.iterdir()) if d.is_dir() and d.name.lower() in _FOLDER_SPLITS]
        if source.is_dir()
        else []
    )
    if not splits:
        raise ConversionError(
            f"{source}: no split folder (Training, Testing, train, test or val) holding class folders"
        )
    plan = []
    for split_dir in splits:
        for class_dir in sorted(d for d in split_dir.iterdir() if d.is_dir()):
            label = resolve_class(class_dir.name, class_name_map)
            if label is None:
                raise ConversionError(
                    f"{class_dir}: unknown class folder {class_dir.name!r} (known: {known_spellings(class_name_map)}). "
                    f"Fix: --class_name_map '{{{class_dir.name}: <one of {', '.join(CLASS_NAMES)}>}}'"
                )
            plan.append((_FOLDER_SPLITS[split_dir.name.lower()], CLASS_NAMES[label], class_dir))
    result = ConversionResult(output)
    if _start(output, "folders", source):
        result.already_done = True
        return result
    for split, class_name, class_dir in plan:
        for path in sorted(p for p in class_dir.iterdir() if p.is_file()):
            if path.suffix.lower() not in IMAGE_EXTENSIONS:
                result.failed.append((str(path), f"{path}: not an image file (extension {path.suffix or 'none'})"))
                continue
            target = output / CLASSIFICATION_TASK / split / class_name / path.name
            if not target.is_file():  # an interrupted run's copies are complete (renamed into place) or absent
                target.parent.mkdir(parents=True, exist_ok=True)
                partial = target.with_name(f".{target.name}.part")
                shutil.copyfile(path, partial)
                os.replace(partial, target)
            result.converted += 1
    _finish(output, "folders", source, result, {"class_name_map": dict(class_name_map or {})})
    return result
