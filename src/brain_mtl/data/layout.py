"""The BRISC 2025 folder layout and file names, in one place.

::

    <root>/classification_task/{train,test[,val]}/<class folder>/*.jpg
    <root>/segmentation_task/{train,test[,val]}/images/*.jpg
    <root>/segmentation_task/{train,test[,val]}/masks/*.png      (same name as the image, without extension)

File names: ``brisc2025_<split>_<index>_<code>_<view>_<sequence>.<ext>``, e.g. ``brisc2025_train_00010_gl_ax_t1.jpg``
(the Kaggle "Brain Tumor MRI Dataset" convention ``Tr-gl_0010.jpg`` is read as well). Class folders and file-name
codes may be spelt any way :data:`brain_mtl.classes.DEFAULT_NAME_MAP` (or a ``class_name_map``) knows.

Everything else (the index, the checks, the synthetic writer, the preview, the DataModule) asks this module for
folder names and file names instead of spelling them out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from brain_mtl.classes import CLASS_NAMES, DEFAULT_NAME_MAP, TUMOR_CODES, class_index
from brain_mtl.data.io import IMAGE_EXTENSIONS

__all__ = [
    "CLASSIFICATION_TASK",
    "CLASS_CODES",
    "IMAGES_DIR",
    "MANIFEST",
    "MASKS_DIR",
    "MASK_EXTENSION",
    "SEGMENTATION_TASK",
    "SEQUENCE",
    "SPLITS",
    "TASKS",
    "VIEWS",
    "class_folders",
    "classification_split_dir",
    "dataset_exists",
    "find_nested_root",
    "format_name",
    "is_image",
    "is_junk",
    "known_spellings",
    "parse_name",
    "resolve_class",
    "segmentation_dirs",
]

MANIFEST = "manifest.csv"
"""Optional per-image table at the dataset root; a ``patient_id`` column (with ``image``) groups images by patient."""

CLASSIFICATION_TASK = "classification_task"
"""Folder of the classification images (one sub-folder per class in each split)."""

SEGMENTATION_TASK = "segmentation_task"
"""Folder of the segmentation pairs (``images/`` and ``masks/`` in each split)."""

TASKS: tuple[str, ...] = (CLASSIFICATION_TASK, SEGMENTATION_TASK)
"""The two task folders of a dataset root."""

SPLITS: tuple[str, ...] = ("train", "val", "test")
"""Split folder names that are indexed (``val`` is optional), in this order."""

IMAGES_DIR = "images"
"""Sub-folder of a segmentation split that holds the images."""

MASKS_DIR = "masks"
"""Sub-folder of a segmentation split that holds the masks."""

MASK_EXTENSION = ".png"
"""Extension of the masks the generator writes (any image extension is read)."""

VIEWS: tuple[str, ...] = ("ax", "co", "sa")
"""BRISC view codes: axial, coronal, sagittal."""

SEQUENCE = "t1"
"""The MRI sequence field of BRISC file names."""

CLASS_CODES: tuple[str, ...] = tuple(
    next(code for code, name in TUMOR_CODES.items() if name == class_name) for class_name in CLASS_NAMES
)
"""File-name code of each class, in class-index order (``gl``, ``me``, ``pi``, ``no``)."""

_IGNORED_FILES = {"thumbs.db", "desktop.ini"}

# brisc2025_train_00010_gl_ax_t1 ; Tr-gl_0010 (the Kaggle "Brain Tumor MRI Dataset" convention).
_NAME_PATTERNS = (
    re.compile(r"^[A-Za-z0-9]+_[A-Za-z]+_\d+_(?P<code>[A-Za-z]+)_(?P<view>[A-Za-z]+)(?:_[A-Za-z0-9]+)*$"),
    re.compile(r"^(?:Tr|Te|Va)-(?P<code>[A-Za-z]+)_\d+$", re.IGNORECASE),
)


# ------------------------------------------------------------------------------------------------------------
# File names
# ------------------------------------------------------------------------------------------------------------
def parse_name(stem: str) -> tuple[str | None, str]:
    """Read the class code and view from a file name (without extension).

    Args:
        stem: e.g. ``"brisc2025_train_00010_gl_ax_t1"`` or ``"Tr-gl_0010"``.

    Returns:
        ``(code, view)``: the class code as written (lower case), or None when the name follows no known
        convention; the view code, or ``"?"``.
    """
    for pattern in _NAME_PATTERNS:
        match = pattern.match(stem)
        if match:
            groups = match.groupdict()
            view = groups.get("view")
            return groups["code"].lower(), view.lower() if view else "?"
    return None, "?"


def format_name(split: str, index: int, label: int, view: str, ext: str = "jpg") -> str:
    """Build a BRISC file name; :func:`parse_name` reads it back.

    Args:
        split: ``"train"``, ``"val"`` or ``"test"``.
        index: running number of the image in its split (written with five digits).
        label: class index (:data:`brain_mtl.classes.CLASS_NAMES` order).
        view: one of :data:`VIEWS`.
        ext: extension without the dot.

    Returns:
        e.g. ``"brisc2025_train_00010_gl_ax_t1.jpg"``.
    """
    return f"brisc2025_{split}_{index:05d}_{CLASS_CODES[label]}_{view}_{SEQUENCE}.{ext}"


# ------------------------------------------------------------------------------------------------------------
# Class spellings
# ------------------------------------------------------------------------------------------------------------
def resolve_class(name: str, name_map: Mapping[str, str] | None = None) -> int | None:
    """Class index of a folder name or file-name code, or None when the spelling is unknown.

    Args:
        name: e.g. ``"gl"``, ``"glioma"``, ``"notumor"`` (case-insensitive).
        name_map: extra or replacement spellings -> class name, merged over the defaults.
    """
    try:
        return class_index(name, name_map)
    except KeyError:
        return None


def known_spellings(name_map: Mapping[str, str] | None = None) -> str:
    """Every accepted class spelling, sorted and comma-separated (for error messages).

    Args:
        name_map: extra spellings, merged over :data:`brain_mtl.classes.DEFAULT_NAME_MAP`.
    """
    keys = {**DEFAULT_NAME_MAP, **{k.lower(): v for k, v in (name_map or {}).items()}}
    return ", ".join(sorted(keys))


def class_folders(split_dir: Path, name_map: Mapping[str, str] | None = None) -> dict[int, list[Path]]:
    """The class folders of a classification split, by class, whatever their spelling.

    Args:
        split_dir: e.g. ``<root>/classification_task/train``.
        name_map: extra class spellings.

    Returns:
        class index -> folders of that class (sorted; usually one). Folders of unknown spelling are left out; a
        missing ``split_dir`` gives an empty dict.
    """
    found: dict[int, list[Path]] = {}
    if not split_dir.is_dir():
        return found
    for child in sorted(split_dir.iterdir()):
        label = resolve_class(child.name, name_map) if child.is_dir() and not is_junk(child) else None
        if label is not None:
            found.setdefault(label, []).append(child)
    return found


# ------------------------------------------------------------------------------------------------------------
# Folders and files
# ------------------------------------------------------------------------------------------------------------
def classification_split_dir(root: Path, split: str) -> Path:
    """``<root>/classification_task/<split>``.

    Args:
        root: the dataset root.
        split: ``"train"``, ``"val"`` or ``"test"``.
    """
    return root / CLASSIFICATION_TASK / split


def segmentation_dirs(root: Path, split: str) -> tuple[Path, Path]:
    """``(images folder, masks folder)`` of a segmentation split.

    Args:
        root: the dataset root.
        split: ``"train"``, ``"val"`` or ``"test"``.
    """
    split_dir = root / SEGMENTATION_TASK / split
    return split_dir / IMAGES_DIR, split_dir / MASKS_DIR


def is_image(path: Path) -> bool:
    """Whether the file name has an image extension (:data:`brain_mtl.data.io.IMAGE_EXTENSIONS`)."""
    return path.suffix.lower() in IMAGE_EXTENSIONS


def is_junk(path: Path) -> bool:
    """Whether a file or folder is skipped silently: hidden names and operating-system litter."""
    return path.name.startswith(".") or path.name.lower() in _IGNORED_FILES


def dataset_exists(root: str | Path) -> bool:
    """Whether ``root`` already holds a BRISC-layout dataset (either task folder)."""
    root = Path(root)
    return any((root / task).is_dir() for task in TASKS)


def find_nested_root(root: Path) -> Path | None:
    """A folder up to two levels below ``root`` (or its parent) that looks like a dataset root, or None.

    Used to suggest the right ``data.root`` when the given one holds no task folder.

    Args:
        root: the folder the user gave.
    """
    candidates: list[Path] = []
    if root.name in TASKS:
        candidates.append(root.parent)
    try:
        for child in sorted(root.iterdir()):
            if child.is_dir():
                candidates.append(child)
                candidates.extend(sorted(c for c in child.iterdir() if c.is_dir()))
    except OSError:
        pass
    for candidate in candidates:
        if any((candidate / t).is_dir() for t in TASKS):
            return candidate
    return None
