"""Byte-identical images shared between the training and the test split (possible leakage).

BRISC 2025 has 46 groups of byte-identical images, 7 of which span train and test; a test image that the model
saw during training inflates the test figures, so the report lists such groups.
"""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path


def _sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def cross_split_duplicates(
    train_paths: Iterable[str | os.PathLike], test_paths: Iterable[str | os.PathLike]
) -> list[dict[str, list[str]]]:
    """Groups of byte-identical files that occur in both lists (compared by size, then SHA-256 of the content).

    Args:
        train_paths: image files of the training split (validation images carved from it included).
        test_paths: image files of the evaluated split.

    Returns:
        One ``{"train": [...], "test": [...]}`` dict per content shared by the two lists, paths sorted, groups
        ordered by their first test path. A file listed twice counts once.
    """
    train = sorted({str(p) for p in train_paths})
    test = sorted({str(p) for p in test_paths})
    sizes: dict[str, int] = {p: os.path.getsize(p) for p in (*train, *test)}
    train_sizes = {sizes[p] for p in train}
    test_sizes = {sizes[p] for p in test}
    shared_sizes = train_sizes & test_sizes
    groups: dict[str, dict[str, list[str]]] = defaultdict(lambda: {"train": [], "test": []})
    # Only files whose size occurs in both splits can be shared: hashing just those keeps this fast.
    for split, paths in (("train", train), ("test", test)):
        for p in paths:
            if sizes[p] in shared_sizes:
                groups[_sha256(Path(p))][split].append(p)
    shared = [g for g in groups.values() if g["train"] and g["test"]]
    return sorted(shared, key=lambda g: g["test"][0])
