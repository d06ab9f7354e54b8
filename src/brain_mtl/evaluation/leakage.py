"""Byte-identical images shared between the training images and the evaluated split (possible leakage).

BRISC 2025 has 46 groups of byte-identical images, 7 of which span train and test; a test image that the model
saw during training inflates the test figures, so the report lists such groups. The comparison itself (file size,
then content hash) is :mod:`brain_mtl.data.index`'s; this module only sorts the groups into training and evaluated
images and finds the file lists of a datamodule.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from brain_mtl.data.index import DatasetIndex, duplicate_groups, find_duplicates, index_dataset

TRAINING_SPLITS = ("train", "val")
"""Splits whose images come from the dataset's training folder (validation is carved from it)."""


def cross_split_duplicates(
    train_paths: Iterable[str | os.PathLike], evaluated_paths: Iterable[str | os.PathLike]
) -> list[dict[str, list[str]]]:
    """Groups of byte-identical files that occur in both lists.

    Args:
        train_paths: image files the model may have been trained on.
        evaluated_paths: image files of the evaluated split.

    Returns:
        One ``{"train": [...], "evaluated": [...]}`` dict per content shared by the two lists, paths sorted,
        groups ordered by their first evaluated path. A file listed twice counts once.
    """
    train = {str(p) for p in train_paths}
    evaluated = {str(p) for p in evaluated_paths} - train
    groups = []
    for group in find_duplicates(sorted(train | evaluated)):
        names = [str(p) for p in group]
        in_train = sorted(p for p in names if p in train)
        in_evaluated = sorted(p for p in names if p in evaluated)
        if in_train and in_evaluated:
            groups.append({"train": in_train, "evaluated": in_evaluated})
    return sorted(groups, key=lambda g: g["evaluated"][0])


def index_duplicates(index: DatasetIndex, split: str = "test") -> list[dict[str, list[str]]]:
    """Groups of identical classification images of an indexed root shared by ``split`` and the training folder.

    Args:
        index: from :func:`brain_mtl.data.index.index_dataset` (with or without a carved validation split).
        split: the evaluated split.

    Returns:
        ``{"train": [...], "evaluated": [...]}`` dicts as in :func:`cross_split_duplicates`; ``train`` holds the
        images of the ``train`` and ``val`` splits other than ``split``.
    """
    groups = []
    for group in duplicate_groups(index, "classification"):
        train = sorted(str(r.path) for r in group if r.split in TRAINING_SPLITS and r.split != split)
        evaluated = sorted(str(r.path) for r in group if r.split == split)
        if train and evaluated:
            groups.append({"train": train, "evaluated": evaluated})
    return sorted(groups, key=lambda g: g["evaluated"][0])


def _attribute(obj: Any, *names: str) -> Any:
    hparams = getattr(obj, "hparams", None)
    for name in names:
        value = getattr(obj, name, None)
        if value is None and hasattr(hparams, "get"):
            value = hparams.get(name)
        if value is not None:
            return value() if callable(value) else value
    return None


def datamodule_duplicates(
    datamodule: Any, split: str, evaluated_paths: Iterable[str]
) -> tuple[list[dict[str, list[str]]] | None, str]:
    """Find the leakage groups of a datamodule, from whatever it exposes.

    Tried in order: a :class:`DatasetIndex` attribute ``index``; a list of training image files
    (``train_image_paths``); a dataset folder (``dataset_root``, else ``root``) to index (content hashes only,
    no decoding).

    Args:
        datamodule: e.g. a ``BrainTumorDataModule`` after ``setup``.
        split: the evaluated split.
        evaluated_paths: the evaluated images (used with a list of training files).

    Returns:
        (groups, note): groups is None when nothing could be compared; the note says how or why not.
    """
    method = "Compared by file size, then content hash, with the classification images of the training folder."
    try:
        index = _attribute(datamodule, "index")
        if isinstance(index, DatasetIndex):
            return index_duplicates(index, split), method
        train_paths = _attribute(datamodule, "train_image_paths")
        if train_paths is not None:
            return cross_split_duplicates(train_paths, evaluated_paths), method
        root = _attribute(datamodule, "dataset_root", "root", "data_root")
        if root is not None and Path(root).is_dir():
            name_map = _attribute(datamodule, "class_name_map")
            return index_duplicates(index_dataset(root, class_name_map=name_map, decode=False), split), method
    except OSError as err:
        return None, f"Not checked: {err}"
    return None, "Not checked: the datamodule exposes neither its dataset index, its training files nor its root."
