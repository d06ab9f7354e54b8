"""Byte-identical images shared between the training images and the evaluated split (possible leakage).

BRISC 2025 has 46 groups of byte-identical images, 7 of which span train and test; a test image that the model
saw during training inflates the test figures, so the report lists such groups. The grouping by content hash is
:mod:`brain_mtl.data.duplicates`'s; this module only sorts the groups into training and evaluated images.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from brain_mtl.data.datamodule import BrainTumorDataModule
from brain_mtl.data.duplicates import duplicate_groups, find_duplicates
from brain_mtl.data.index import index_dataset
from brain_mtl.data.records import DatasetIndex

__all__ = [
    "TRAINING_SPLITS",
    "TrainingImageList",
    "cross_split_duplicates",
    "datamodule_duplicates",
    "index_duplicates",
]

TRAINING_SPLITS = ("train", "val")
"""Splits whose images come from the dataset's training folder (validation is carved from it)."""

_METHOD = "Compared by file size, then content hash, with the classification images of the training folder."


@runtime_checkable
class TrainingImageList(Protocol):
    """A datamodule other than :class:`~brain_mtl.data.BrainTumorDataModule` that lists its training image files.

    Evaluating on such a datamodule, the report can still look for leakage: it compares these files with the
    evaluated ones by content.

    Attributes:
        train_image_paths: image files the model may have been trained on.
    """

    train_image_paths: Sequence[str | os.PathLike]


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


def datamodule_duplicates(
    datamodule: BrainTumorDataModule | TrainingImageList, split: str, evaluated_paths: Iterable[str]
) -> tuple[list[dict[str, list[str]]] | None, str]:
    """Find the leakage groups of an evaluated datamodule.

    A :class:`~brain_mtl.data.BrainTumorDataModule` is compared through its dataset index (``index`` after
    ``setup``; before it, its ``dataset_root`` is indexed, content hashes only, no decoding). Another datamodule is
    compared when it lists its training files (:class:`TrainingImageList`); any other is not checked.

    Args:
        datamodule: the datamodule whose split was evaluated.
        split: the evaluated split.
        evaluated_paths: the evaluated images (compared with a :class:`TrainingImageList`'s files; a
            ``BrainTumorDataModule``'s index already knows its split's images).

    Returns:
        (groups, note): groups is None when nothing could be compared; the note says how or why not.
    """
    try:
        if isinstance(datamodule, BrainTumorDataModule):
            index = datamodule.index
            if index is None:
                root = datamodule.dataset_root
                if not Path(root).is_dir():
                    return None, f"Not checked: the dataset folder {root} does not exist."
                index = index_dataset(root, class_name_map=datamodule.class_name_map, decode=False)
            return index_duplicates(index, split), _METHOD
        if isinstance(datamodule, TrainingImageList):
            return cross_split_duplicates(datamodule.train_image_paths, evaluated_paths), _METHOD
    except OSError as err:
        return None, f"Not checked: {err}"
    return None, (
        f"Not checked: {type(datamodule).__name__} is not a BrainTumorDataModule and lists no training images "
        "(train_image_paths)."
    )
