"""Byte-identical images: the content hash, and the one grouping of files or records by it.

BRISC 2025 has 46 groups of byte-identical images, 7 of which span train and test. The index hashes every file
once (:func:`file_digest`, stored in :attr:`ImageRecord.digest`); :func:`group_by_digest` groups files or records
by that hash for the index's checks, :func:`brain_mtl.data.summary.summarize` and :mod:`brain_mtl.evaluation.leakage`.
The validation split joins same-digest records transitively with names and near-duplicates
(:func:`brain_mtl.data.split.same_image_groups`, through :mod:`brain_mtl.data.grouping`).
"""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from brain_mtl import moved_attribute
from brain_mtl.classes import CLASS_NAMES
from brain_mtl.data.layout import SPLITS
from brain_mtl.data.records import DatasetIndex, ImageRecord, Problem

__all__ = [
    "check_duplicates",
    "duplicate_groups",
    "file_digest",
    "find_duplicates",
    "group_by_digest",
]

T = TypeVar("T")


def file_digest(data: bytes) -> str:
    """Content hash used to find byte-identical files.

    Args:
        data: the file's bytes.

    Returns:
        A 32-character hex digest (BLAKE2b, 16 bytes); equal digests mean identical bytes.
    """
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def group_by_digest(items: Iterable[T], digest: Callable[[T], str | None]) -> list[list[T]]:
    """Group items whose content hash is equal; the one grouping by content in the library.

    Args:
        items: records, paths, ...; each group keeps their order.
        digest: the content hash of an item; items without one (None or ``""``) are left out.

    Returns:
        Groups of two or more items, in the order of their first member.
    """
    groups: dict[str, list[T]] = defaultdict(list)
    for item in items:
        key = digest(item)
        if key:
            groups[key].append(item)
    return [group for group in groups.values() if len(group) >= 2]


def _read_digest(path: Path) -> str | None:
    try:
        return file_digest(path.read_bytes())
    except OSError:
        return None


def find_duplicates(paths: Iterable[str | os.PathLike]) -> list[list[Path]]:
    """Group byte-identical files.

    Files are compared by size first, so only files that share their size are read and hashed.

    Args:
        paths: files to compare (unreadable ones are skipped).

    Returns:
        Groups of two or more paths whose contents are identical, each sorted, groups sorted by first path.
    """
    by_size: dict[int, list[Path]] = defaultdict(list)
    for p in map(Path, paths):
        try:
            by_size[p.stat().st_size].append(p)
        except OSError:
            continue
    candidates = [p for same_size in by_size.values() if len(same_size) >= 2 for p in same_size]
    return sorted((sorted(g) for g in group_by_digest(candidates, _read_digest)), key=lambda g: str(g[0]))


def duplicate_groups(
    index: DatasetIndex, task: str = "classification", splits: Sequence[str] | None = None
) -> list[list[ImageRecord]]:
    """Groups of byte-identical images of one task in an indexed root.

    Args:
        index: from :func:`~brain_mtl.data.index.index_dataset`.
        task: ``"classification"`` or ``"segmentation"`` (segmentation images are copies of classification
            images in BRISC, so the two tasks are compared separately).
        splits: restrict to these splits (default: all).

    Returns:
        Groups of two or more records with the same content hash, sorted by first path.
    """
    records = [r for r in index.records if r.task == task and (splits is None or r.split in splits)]
    return sorted(group_by_digest(records, lambda r: r.digest), key=lambda g: str(g[0].path))


def check_duplicates(records: Sequence[ImageRecord], problems: list[Problem]) -> None:
    """Byte-identical classification images must share a label (error); ones spanning splits are reported.

    Args:
        records: every record of the index.
        problems: where the problems found are appended.
    """
    classification = [r for r in records if r.task == "classification"]
    for group in sorted(group_by_digest(classification, lambda r: r.digest), key=lambda g: str(g[0].path)):
        if len({r.label for r in group}) > 1:
            listing = ", ".join(f"{r.path} ({CLASS_NAMES[r.label]})" for r in group)
            problems.append(
                Problem(
                    "label_conflict",
                    group[0].path,
                    f"conflicting labels for the same image: byte-identical files in different classes: {listing}.",
                    "keep the copy in the right class folder and delete the others.",
                )
            )
        splits = sorted({r.split for r in group}, key=SPLITS.index)
        if len(splits) > 1:
            first = next(r for r in group if r.split == splits[0])
            others = ", ".join(str(r.path) for r in group if r is not first)
            problems.append(
                Problem(
                    "cross_split_duplicate",
                    first.path,
                    f"the same image (byte-identical) is in {' and '.join(splits)}: {others}.",
                    "scores on it are not held-out; remove the copy from one split if that matters.",
                    "warning",
                )
            )


def __getattr__(name: str) -> Any:
    # cross_split_duplicates indexes a root when given one: it lives in brain_mtl.data.index, which imports this module.
    return moved_attribute(__name__, name, {"cross_split_duplicates": "brain_mtl.data.index:cross_split_duplicates"})
