"""Near-duplicates: the perceptual hash, the pairs and groups, and their use by the split, check-data and the report."""

from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest

from brain_mtl.data import index_dataset
from brain_mtl.data import near_duplicates as nd
from brain_mtl.data.near_duplicates import (
    NEAR_DUPLICATE_DISTANCE,
    group_near_duplicates,
    hamming_distances,
    near_duplicate_groups,
    near_duplicate_pairs,
    perceptual_hash,
)
from brain_mtl.data.split import carve_validation
from brain_mtl.data.summary import format_report, summarize
from brain_mtl.evaluation.leakage import index_near_duplicates
from tests.data.data_helpers import TreeBuilder


def smooth_image(seed: int, side: int = 160) -> np.ndarray:
    """A gray image with structure at every scale (blurred noise), unlike any other seed's."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((10, 10)).astype(np.float32)
    image = cv2.resize(coarse, (side, side), interpolation=cv2.INTER_CUBIC)
    image += 0.1 * cv2.GaussianBlur(rng.random((side, side)).astype(np.float32), (0, 0), 2)
    return np.clip(255 * (image - image.min()) / np.ptp(image), 0, 255).astype(np.uint8)


def reencoded(image: np.ndarray, side: int = 120, quality: int = 60) -> np.ndarray:
    """The same picture resized, slightly brightened and JPEG re-encoded: a near-duplicate."""
    small = cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA)
    brighter = cv2.convertScaleAbs(small, alpha=1.05, beta=4)
    ok, data = cv2.imencode(".jpg", brighter, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.imdecode(data, cv2.IMREAD_UNCHANGED)


def distance(a: int, b: int) -> int:
    return bin(a ^ b).count("1")


def test_hash_survives_reencoding_and_tells_different_images_apart() -> None:
    image = smooth_image(0)
    h = perceptual_hash(image)
    assert 0 <= h < 2**64
    assert perceptual_hash(image) == h  # deterministic
    assert distance(h, perceptual_hash(reencoded(image))) <= NEAR_DUPLICATE_DISTANCE
    as_bgr = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    assert perceptual_hash(as_bgr) == h  # a gray JPEG stored as RGB hashes like the gray one
    others = [perceptual_hash(smooth_image(seed)) for seed in range(1, 21)]
    assert min(distance(h, o) for o in others) > 2 * NEAR_DUPLICATE_DISTANCE


def test_hamming_distances_and_the_popcount_without_numpy_2(monkeypatch: pytest.MonkeyPatch) -> None:
    hashes = [0, 1, 0b1011, 2**64 - 1, 2**63]
    expected = np.array([[distance(a, b) for b in hashes] for a in hashes])
    assert (hamming_distances(hashes, hashes) == expected).all()
    monkeypatch.delattr(np, "bitwise_count", raising=False)
    assert (hamming_distances(hashes, hashes) == expected).all()


def test_pairs_cover_every_close_pair_once_across_chunks() -> None:
    rng = np.random.default_rng(0)
    hashes = [int(x) for x in rng.integers(0, 2**63, 300, dtype=np.int64)]
    hashes += [h ^ 0b11 for h in hashes[:20]]  # 20 pairs at distance 2
    pairs = near_duplicate_pairs(hashes, 2, chunk=64)
    brute = [(i, j, distance(a, b)) for (i, a), (j, b) in itertools.combinations(enumerate(hashes), 2)]
    assert pairs == [p for p in brute if p[2] <= 2]
    assert len(pairs) >= 20


def test_groups_are_transitive_and_skip_unhashed_items() -> None:
    items = ["a", "b", "c", "d", "e"]
    hashes = {"a": 0, "b": 0b1111, "c": 0b11111111, "d": 2**64 - 1, "e": None}
    groups = group_near_duplicates(items, hashes.get, 4)
    assert groups == [["a", "b", "c"]]  # a~b (4), b~c (4), a and c 8 apart: one group by chaining
    assert group_near_duplicates(items, hashes.get, 0) == []


def near_duplicate_tree(root: Path) -> tuple[TreeBuilder, list[Path]]:
    """A valid tree (6 images per class, train only) whose glioma images are 3 near-copies of 2 scans."""
    tree = TreeBuilder(root).valid(per_class=6, splits=("train",))
    gliomas = sorted((root / "classification_task" / "train" / "glioma").glob("*.jpg"))
    for i, path in enumerate(gliomas):
        scan = smooth_image(100 + i // 3)
        picture = scan if i % 3 == 0 else reencoded(scan, side=150 - 10 * (i % 3))
        assert cv2.imwrite(str(path), picture)
        seg = root / "segmentation_task" / "train" / "images" / path.name
        seg.write_bytes(path.read_bytes())
        mask = np.zeros(picture.shape[:2], np.uint8)
        mask[10:30, 10:30] = 255
        assert cv2.imwrite(str(root / "segmentation_task" / "train" / "masks" / f"{path.stem}.png"), mask)
    return tree, gliomas


def test_validation_split_keeps_near_duplicates_on_one_side(tmp_path: Path) -> None:
    _, gliomas = near_duplicate_tree(tmp_path / "d")
    index = index_dataset(tmp_path / "d")
    assert index.errors == []
    groups = near_duplicate_groups(index)
    assert sorted(sorted(r.path for r in g) for g in groups) == [gliomas[:3], gliomas[3:]]
    straddled_exact = 0
    for seed in range(10):
        carved = carve_validation(index, 0.34, seed)
        splits = {r.path: r.split for r in carved.records if r.task == "classification"}
        for group in (gliomas[:3], gliomas[3:]):
            assert len({splits[p] for p in group}) == 1, seed
        seg_splits = {r.path.name: r.split for r in carved.records if r.task == "segmentation"}
        assert all(seg_splits[p.name] == splits[p] for p in gliomas)  # an image leaves both streams together
        exact = carve_validation(index, 0.34, seed, near_duplicate_distance=None)
        exact_splits = {r.path: r.split for r in exact.records if r.task == "classification"}
        straddled_exact += any(len({exact_splits[p] for p in g}) > 1 for g in (gliomas[:3], gliomas[3:]))
    assert straddled_exact > 0  # byte-identity alone lets the near-copies straddle the split


def test_check_data_counts_and_lists_near_duplicates_across_splits(tmp_path: Path) -> None:
    root = tmp_path / "d"
    tree = TreeBuilder(root).valid(per_class=2, splits=("train", "test"))
    scan = smooth_image(7)
    train_copy = tree.cls("train", "meningioma", "me")
    test_copy = tree.cls("test", "meningioma", "me")
    assert cv2.imwrite(str(train_copy), scan)
    assert cv2.imwrite(str(test_copy), reencoded(scan))
    index = index_dataset(root)
    summary = summarize(index)["near_duplicates"]
    assert summary["max_distance"] == NEAR_DUPLICATE_DISTANCE
    assert summary["hashed_images"] == 18
    assert summary["across_splits"] == [[f"{test_copy} (test)", f"{train_copy} (train)"]]  # in path order
    text = format_report(index)
    assert "near-duplicates (classification images whose perceptual hashes differ in <= 4" in text
    assert f"{test_copy} (test) ~ {train_copy} (train)" in text
    # Hashing only (no decoding) has no perceptual hash: said, not counted as zero groups.
    assert "not computed: the images were not decoded" in format_report(index_dataset(root, decode=False))


def test_report_leakage_lists_near_duplicates_apart_from_identical_copies(tmp_path: Path) -> None:
    root = tmp_path / "d"
    tree = TreeBuilder(root).valid(per_class=2, splits=("train", "test"))
    scan = smooth_image(9)
    near_train, identical_train = tree.cls("train", "pituitary", "pi"), tree.cls("train", "glioma", "gl")
    near_test, identical_test = tree.cls("test", "pituitary", "pi"), tree.cls("test", "glioma", "gl")
    assert cv2.imwrite(str(near_train), scan)
    assert cv2.imwrite(str(near_test), reencoded(scan))
    identical_test.write_bytes(identical_train.read_bytes())
    index = index_dataset(root)
    rows = index_near_duplicates(index, "test")
    assert [(r["evaluated"], r["train"]) for r in rows] == [(str(near_test), [str(near_train)])]
    assert rows[0]["distance"] <= NEAR_DUPLICATE_DISTANCE  # re-encoded: often the very same hash
    assert index_near_duplicates(index_dataset(root, decode=False), "test") is None


def test_near_duplicate_distance_is_validated() -> None:
    from brain_mtl.data import BrainTumorDataModule

    with pytest.raises(ValueError, match="near_duplicate_distance"):
        BrainTumorDataModule(near_duplicate_distance=65)
    with pytest.raises(ValueError, match="test_split"):
        BrainTumorDataModule(test_split="train")  # type: ignore[arg-type]
    assert nd.NEAR_DUPLICATE_DISTANCE % 2 == 0  # distances between median-split hashes are even
