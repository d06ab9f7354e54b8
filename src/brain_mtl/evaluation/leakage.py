"""Images shared between the training images and the evaluated split (possible leakage): identical or near.

BRISC 2025 has 46 groups of byte-identical images, 7 of which span train and test; a test image that the model
saw during training inflates the test figures, so the report lists such groups. The grouping by content hash is
:mod:`brain_mtl.data.duplicates`'s; this module only sorts the groups into training and evaluated images.
Near-duplicates (the same slice re-encoded, or a neighbouring slice of one series: perceptual hashes a few bits
apart, :mod:`brain_mtl.data.near_duplicates`) leak too, and more often: the report lists each evaluated image that
has one in the training folder, beside the byte-identical groups.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from brain_mtl.data.duplicates import duplicate_groups, find_duplicates
from brain_mtl.data.index import index_dataset
from brain_mtl.data.near_duplicates import NEAR_DUPLICATE_DISTANCE, hamming_distances
from brain_mtl.data.records import DatasetIndex

__all__ = [
    "TRAINING_SPLITS",
    "IndexedDataModule",
    "TrainingImageList",
    "datamodule_duplicates",
    "datamodule_near_duplicates",
    "index_duplicates",
    "index_near_duplicates",
    "leaked_duplicates",
]

TRAINING_SPLITS = ("train", "val")
"""Splits whose images come from the dataset's training folder (validation is carved from it)."""

_METHOD = "Compared by file size, then content hash, with the classification images of the training folder."


@runtime_checkable
class IndexedDataModule(Protocol):
    """A datamodule with a dataset index, as :class:`~brain_mtl.data.BrainTumorDataModule` is.

    Recognised by its attributes, so that the report code needs no Lightning.

    Attributes:
        index: the dataset index after ``setup`` (None before).
        dataset_root: the folder indexed when ``index`` is None.
        class_name_map: extra class spellings of the folder.
    """

    index: DatasetIndex | None
    dataset_root: Path
    class_name_map: dict[str, str] | None


@runtime_checkable
class TrainingImageList(Protocol):
    """A datamodule other than :class:`~brain_mtl.data.BrainTumorDataModule` that lists its training image files.

    Evaluating on such a datamodule, the report can still look for leakage: it compares these files with the
    evaluated ones by content.

    Attributes:
        train_image_paths: image files the model may have been trained on.
    """

    train_image_paths: Sequence[str | os.PathLike]


def leaked_duplicates(
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
        ``{"train": [...], "evaluated": [...]}`` dicts as in :func:`leaked_duplicates`; ``train`` holds the
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
    datamodule: IndexedDataModule | TrainingImageList, split: str, evaluated_paths: Iterable[str]
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
        if isinstance(datamodule, IndexedDataModule):
            index = datamodule.index
            if index is None:
                root = datamodule.dataset_root
                if not Path(root).is_dir():
                    return None, f"Not checked: the dataset folder {root} does not exist."
                index = index_dataset(root, class_name_map=datamodule.class_name_map, decode=False)
            return index_duplicates(index, split), _METHOD
        if isinstance(datamodule, TrainingImageList):
            return leaked_duplicates(datamodule.train_image_paths, evaluated_paths), _METHOD
    except OSError as err:
        return None, f"Not checked: {err}"
    return None, (
        f"Not checked: {type(datamodule).__name__} is not a BrainTumorDataModule and lists no training images "
        "(train_image_paths)."
    )


def index_near_duplicates(
    index: DatasetIndex, split: str = "test", max_distance: int = NEAR_DUPLICATE_DISTANCE
) -> list[dict] | None:
    """Evaluated images with a near-duplicate (not a byte-identical copy) among the training folder's images.

    Args:
        index: from :func:`brain_mtl.data.index.index_dataset` with ``decode=True`` (the perceptual hashes).
        split: the evaluated split.
        max_distance: the largest Hamming distance between the perceptual hashes of near-duplicates.

    Returns:
        One ``{"evaluated": path, "train": [paths], "distance": d}`` dict per evaluated image that has training
        images at most ``max_distance`` bits away (``train``: those images, closest first; ``d``: the smallest
        distance), sorted by path; None when the index holds no perceptual hashes (not decoded).
    """
    classification = [r for r in index.records if r.task == "classification"]
    if any(r.phash is None for r in classification):
        return None
    train = [r for r in classification if r.split in TRAINING_SPLITS and r.split != split]
    evaluated = sorted((r for r in classification if r.split == split), key=lambda r: str(r.path))
    if not train or not evaluated:
        return []
    distances = hamming_distances([r.phash for r in evaluated], [r.phash for r in train])
    found = []
    for record, row in zip(evaluated, distances, strict=True):
        close = [int(j) for j in np.argsort(row, kind="stable") if row[j] <= max_distance]
        close = [j for j in close if train[j].digest != record.digest]  # identical copies are listed apart
        if close:
            found.append(
                {
                    "evaluated": str(record.path),
                    "train": [str(train[j].path) for j in close],
                    "distance": int(row[close[0]]),
                }
            )
    return found


def datamodule_near_duplicates(
    datamodule: object, split: str, max_distance: int = NEAR_DUPLICATE_DISTANCE
) -> tuple[list[dict] | None, str]:
    """The near-duplicate leakage of an evaluated datamodule (see :func:`index_near_duplicates`).

    Only a :class:`~brain_mtl.data.BrainTumorDataModule` whose index was built with the pixels decoded (as ``setup``
    does) is checked: its images' perceptual hashes are already in the index.

    Args:
        datamodule: the datamodule whose split was evaluated.
        split: the evaluated split.
        max_distance: the largest Hamming distance between the perceptual hashes of near-duplicates.

    Returns:
        (rows, note): rows is None when nothing could be compared; the note says how or why not.
    """
    index = datamodule.index if isinstance(datamodule, IndexedDataModule) else None
    if index is None:
        return None, "Near-duplicates not checked: no decoded dataset index (a BrainTumorDataModule after setup)."
    rows = index_near_duplicates(index, split, max_distance)
    if rows is None:
        return None, "Near-duplicates not checked: the dataset index was built without decoding the images."
    return rows, (
        f"Perceptual hashes (DCT pHash, 64 bits) at most {max_distance} bits apart, byte-identical copies left out, "
        "against the classification images of the training folder."
    )
