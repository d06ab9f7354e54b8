"""The validation split: a stratified, seeded share of ``train`` that never splits one image (or series) in two.

BRISC has no validation split, and every segmentation image is also (byte-identical) a classification image, some
under other names; :func:`carve_validation` moves whole groups of records that are the same image (same file name
in either task, or same bytes) so that no image is trained on and validated on at once, in either loader. By default
it also keeps near-duplicates together (perceptual hashes at most
:data:`~brain_mtl.data.near_duplicates.NEAR_DUPLICATE_DISTANCE` bits apart: the same slice re-encoded, or a
neighbouring slice of the same series), so that a near-copy of a training image cannot lift the validation score.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from brain_mtl.data.grouping import linked_groups
from brain_mtl.data.near_duplicates import NEAR_DUPLICATE_DISTANCE, near_duplicate_pairs
from brain_mtl.data.records import DatasetIndex, ImageRecord

__all__ = ["carve_fold", "carve_validation", "fold_groups", "same_image_groups"]


def same_image_groups(
    records: Sequence[ImageRecord], near_duplicate_distance: int | None = None
) -> list[list[ImageRecord]]:
    """Records that are one image (a file name across tasks, bytes, near-duplicates) or one patient, transitively.

    The patient is :attr:`~brain_mtl.data.records.ImageRecord.patient`, from the folder's manifest: a group never
    spans two sides of a split.

    Args:
        records: e.g. the training records of both tasks.
        near_duplicate_distance: also join records whose perceptual hashes are at most this many bits apart
            (None: names and bytes only; records without a hash are joined by names and bytes only).

    Returns:
        Groups (a record alone is a group of one), sorted by their first path.
    """
    links: list[tuple[int, int]] = []
    first_by_key: dict[tuple[str, str], int] = {}
    for i, r in enumerate(records):
        for key in (("stem", r.stem), ("digest", r.digest), ("patient", r.patient or "")):
            if key[1]:
                links.append((first_by_key.setdefault(key, i), i))
    if near_duplicate_distance is not None:
        hashed = [i for i, r in enumerate(records) if r.phash is not None]
        pairs = near_duplicate_pairs([records[i].phash for i in hashed], near_duplicate_distance)
        links += [(hashed[a], hashed[b]) for a, b, _ in pairs]
    groups = [[records[i] for i in group] for group in linked_groups(len(records), links)]
    return sorted(groups, key=lambda g: str(g[0].path))


def carve_validation(
    index: DatasetIndex,
    val_fraction: float = 0.1,
    seed: int = 42,
    near_duplicate_distance: int | None = NEAR_DUPLICATE_DISTANCE,
) -> DatasetIndex:
    """Move a stratified, seeded fraction of ``train`` to a ``val`` split, unless the folder has its own.

    Records that are the same image (a segmentation image and its classification copy, byte-identical files,
    and near-duplicates unless ``near_duplicate_distance`` is None) always move together, so no image is in train
    and validation at once in either loader. A group counts for the class most of its classification images have.
    Each class loses about ``round(val_fraction * n)`` images (whole groups, so a little more where the last group
    taken is large; at least one image when the class has two or more and the fraction is positive).

    Args:
        index: from :func:`~brain_mtl.data.index.index_dataset`.
        val_fraction: share of each class's training images that becomes validation (0 disables it).
        seed: the same seed picks the same images.
        near_duplicate_distance: keep images whose perceptual hashes are at most this many bits apart on one
            side (None: byte-identical images and same names only).

    Returns:
        A new index (the argument is not modified); unchanged when the root has a ``val`` split.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if index.has_val_split or val_fraction == 0:
        return index
    by_class = _groups_by_class([r for r in index.records if r.split == "train"], near_duplicate_distance)
    rng = np.random.default_rng(seed)
    moved: set[int] = set()
    for label in sorted(by_class):
        class_groups = by_class[label]
        total = sum(_weight(g) for g in class_groups)
        target = round(val_fraction * total)
        if target == 0 and total >= 2:
            target = 1
        taken = 0
        for i in rng.permutation(len(class_groups)):
            if taken >= target:
                break
            moved.update(id(r) for r in class_groups[i])
            taken += _weight(class_groups[i])
    return _moved_to_val(index, moved)


def fold_groups(
    train: Sequence[ImageRecord],
    num_folds: int,
    seed: int = 42,
    near_duplicate_distance: int | None = NEAR_DUPLICATE_DISTANCE,
) -> list[list[list[ImageRecord]]]:
    """Split training records into ``num_folds`` folds of whole groups, stratified by class and seeded.

    Groups are :func:`same_image_groups` (a segmentation image and its classification copy, byte-identical files,
    near-duplicates): a group is never split between folds. Each class's groups, in a seeded random order, go one at
    a time to the fold that holds the fewest images of that class so far (the lowest-numbered on a tie), so the
    folds are disjoint, together cover every record exactly once, and their class counts differ by at most one
    group's size.

    Args:
        train: the records to fold (both tasks of the training split).
        num_folds: how many folds (2 or more).
        seed: the same seed gives the same folds.
        near_duplicate_distance: as in :func:`carve_validation`.

    Returns:
        Per fold, its groups.
    """
    if num_folds < 2:
        raise ValueError(f"num_folds must be 2 or more, got {num_folds}")
    by_class = _groups_by_class(train, near_duplicate_distance)
    rng = np.random.default_rng(seed)
    folds: list[list[list[ImageRecord]]] = [[] for _ in range(num_folds)]
    for label in sorted(by_class):
        counts = [0] * num_folds
        for i in rng.permutation(len(by_class[label])):
            group = by_class[label][i]
            target = min(range(num_folds), key=lambda k: (counts[k], k))
            folds[target].append(group)
            counts[target] += _weight(group)
    return folds


def carve_fold(
    index: DatasetIndex,
    num_folds: int,
    fold: int,
    seed: int = 42,
    near_duplicate_distance: int | None = NEAR_DUPLICATE_DISTANCE,
) -> DatasetIndex:
    """The index with fold ``fold`` of :func:`fold_groups` of the training split as the ``val`` split.

    Raises:
        ValueError: ``fold`` is not in ``[0, num_folds)``, or the folder has a ``val`` split of its own (folds are
            carved from ``train``; a fixed validation split and cross-validation exclude each other).
    """
    if not 0 <= fold < num_folds:
        raise ValueError(f"fold must be in [0, {num_folds}) for {num_folds} folds, got {fold}")
    if index.has_val_split or any(r.split == "val" for r in index.records):
        raise ValueError(
            f"{index.root}: the folder has a val split of its own; cross-validation folds are carved from train. "
            "Fix: merge the val split into train, or leave data.num_folds unset (null)."
        )
    train = [r for r in index.records if r.split == "train"]
    groups = fold_groups(train, num_folds, seed, near_duplicate_distance)[fold]
    return _moved_to_val(index, {id(r) for group in groups for r in group})


def _groups_by_class(
    train: Sequence[ImageRecord], near_duplicate_distance: int | None
) -> dict[int, list[list[ImageRecord]]]:
    """:func:`same_image_groups` by class: a group counts for the class most of its classification images have."""
    by_class: dict[int, list[list[ImageRecord]]] = defaultdict(list)
    for group in same_image_groups(train, near_duplicate_distance):
        cls_labels = [r.label for r in group if r.task == "classification"]
        label = Counter(cls_labels or [r.label for r in group]).most_common(1)[0][0]
        by_class[label].append(group)
    return by_class


def _weight(group: list[ImageRecord]) -> int:
    """A group's images: its classification records (every image once in BRISC), else its segmentation ones."""
    return sum(r.task == "classification" for r in group) or sum(r.task == "segmentation" for r in group)


def _moved_to_val(index: DatasetIndex, moved: set[int]) -> DatasetIndex:
    records = [replace(r, split="val") if id(r) in moved else r for r in index.records]
    return replace(index, records=records, carved_validation=True)
