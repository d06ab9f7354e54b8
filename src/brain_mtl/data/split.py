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

from brain_mtl.data.near_duplicates import NEAR_DUPLICATE_DISTANCE, near_duplicate_pairs
from brain_mtl.data.records import DatasetIndex, ImageRecord

__all__ = ["carve_validation", "same_image_groups"]


def same_image_groups(
    records: Sequence[ImageRecord], near_duplicate_distance: int | None = None
) -> list[list[ImageRecord]]:
    """Records that are the same image: same file name (across tasks), same bytes or near-duplicates, transitively.

    Args:
        records: e.g. the training records of both tasks.
        near_duplicate_distance: also join records whose perceptual hashes are at most this many bits apart
            (None: names and bytes only; records without a hash are joined by names and bytes only).

    Returns:
        Groups (a record alone is a group of one), sorted by their first path.
    """
    parent = list(range(len(records)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_by_key: dict[tuple[str, str], int] = {}
    for i, r in enumerate(records):
        for key in (("stem", r.stem), ("digest", r.digest)):
            if not key[1]:
                continue
            j = first_by_key.setdefault(key, i)
            if j != i:
                parent[find(i)] = find(j)
    if near_duplicate_distance is not None:
        hashed = [i for i, r in enumerate(records) if r.phash is not None]
        for a, b, _ in near_duplicate_pairs([records[i].phash for i in hashed], near_duplicate_distance):
            parent[find(hashed[a])] = find(hashed[b])
    groups: dict[int, list[ImageRecord]] = defaultdict(list)
    for i, r in enumerate(records):
        groups[find(i)].append(r)
    return sorted(groups.values(), key=lambda g: str(g[0].path))


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
    train = [r for r in index.records if r.split == "train"]
    groups = same_image_groups(train, near_duplicate_distance)
    by_class: dict[int, list[list[ImageRecord]]] = defaultdict(list)
    for group in groups:
        cls_labels = [r.label for r in group if r.task == "classification"]
        label = Counter(cls_labels or [r.label for r in group]).most_common(1)[0][0]
        by_class[label].append(group)
    rng = np.random.default_rng(seed)
    moved: set[int] = set()
    for label in sorted(by_class):
        class_groups = by_class[label]

        def weight(group: list[ImageRecord]) -> int:
            return sum(r.task == "classification" for r in group) or sum(r.task == "segmentation" for r in group)

        total = sum(weight(g) for g in class_groups)
        target = round(val_fraction * total)
        if target == 0 and total >= 2:
            target = 1
        taken = 0
        for i in rng.permutation(len(class_groups)):
            if taken >= target:
                break
            moved.update(id(r) for r in class_groups[i])
            taken += weight(class_groups[i])
    records = [replace(r, split="val") if id(r) in moved else r for r in index.records]
    return replace(index, records=records, carved_validation=True)
