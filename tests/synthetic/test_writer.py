"""The synthetic dataset writer: BRISC layout and quirks, determinism, proportions, the synthetic marker."""

from __future__ import annotations

import csv
import json
import shutil
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from brain_mtl.data.index import index_dataset
from brain_mtl.data.layout import parse_name
from brain_mtl.data.synthetic import generate_synthetic_dataset, is_synthetic_dataset


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic dataset (40 train / 12 test, seed 3), shared read-only by the tests of this module."""
    root = tmp_path_factory.mktemp("synthetic") / "brisc"
    generate_synthetic_dataset(root, 40, 12, seed=3)
    return root


def test_dataset_has_the_real_data_quirks(synthetic_root: Path) -> None:
    with open(synthetic_root / "manifest.csv") as handle:
        rows = list(csv.DictReader(handle))
    cls_files = sorted((synthetic_root / "classification_task").rglob("*.jpg"))
    seg_images = sorted((synthetic_root / "segmentation_task").rglob("images/*.jpg"))
    masks = sorted((synthetic_root / "segmentation_task").rglob("masks/*.png"))
    assert len(rows) == len(cls_files) + len(seg_images)
    # BRISC file names with known codes and the three views.
    parsed = [parse_name(p.stem) for p in cls_files]
    assert all(code in ("gl", "me", "pi", "no") for code, _ in parsed)
    assert {view for _, view in parsed} == {"ax", "co", "sa"}
    # No-tumour images only in classification_task; every segmentation image is a classification image.
    assert not any("_no_" in p.name for p in seg_images)
    cls_bytes = {p.read_bytes() for p in cls_files}
    assert all(p.read_bytes() in cls_bytes for p in seg_images)
    # Several sizes, some not square; JPEGs stored gray and RGB.
    decoded = [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in cls_files]
    sizes = {d.shape[:2] for d in decoded}
    assert len(sizes) >= 3 and any(h != w for h, w in sizes)
    assert {d.ndim for d in decoded} == {2, 3}
    # Masks are not exactly binary.
    values = np.unique(np.concatenate([cv2.imread(str(m), cv2.IMREAD_UNCHANGED).ravel() for m in masks]))
    assert values.min() == 0 and values.max() == 255
    assert any(0 < v <= 7 for v in values) and any(248 <= v < 255 for v in values)
    assert any(8 <= v <= 247 for v in values)


def test_generation_is_deterministic_and_refuses_to_overwrite(tmp_path: Path) -> None:
    a = generate_synthetic_dataset(tmp_path / "a", 8, 4, seed=9)
    generate_synthetic_dataset(tmp_path / "b", 8, 4, seed=9)
    generate_synthetic_dataset(tmp_path / "c", 8, 4, seed=10)
    files = lambda root: {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()}  # noqa: E731
    assert files(tmp_path / "a") == files(tmp_path / "b")
    assert files(tmp_path / "a") != files(tmp_path / "c")
    assert sum(a.counts["train"]) == 8 and sum(a.counts["test"]) == 4
    with pytest.raises(FileExistsError):
        generate_synthetic_dataset(tmp_path / "a", 8, 4)


def test_parallel_generation_writes_the_same_files(tmp_path: Path) -> None:
    generate_synthetic_dataset(tmp_path / "a", 6, 2, seed=1)
    generate_synthetic_dataset(tmp_path / "b", 6, 2, seed=1, workers=2)
    for p in (tmp_path / "a").rglob("*.*"):
        assert p.read_bytes() == (tmp_path / "b" / p.relative_to(tmp_path / "a")).read_bytes()


def test_class_proportions_follow_brisc(tmp_path: Path) -> None:
    report = generate_synthetic_dataset(tmp_path / "d", 200, 50, seed=0, duplicates=True)
    assert report.counts["train"] == [46, 53, 58, 43]  # 1147/1329/1457/1067 of 5000, scaled to 200
    assert report.counts["test"] == [13, 15, 15, 7]
    index = index_dataset(tmp_path / "d")
    assert index.errors == []
    assert report.duplicates == {"within_train": 1, "train_test": 1}
    assert [p.kind for p in index.warnings] == ["cross_split_duplicate"]
    assert Counter(r.label for r in index.segmentation("train")) == dict(enumerate(report.counts["train"][:3]))


@pytest.mark.slow
def test_default_synthetic_set_is_fast_enough(tmp_path: Path) -> None:
    start = time.perf_counter()
    generate_synthetic_dataset(tmp_path / "full", 500, 100, seed=42)
    assert time.perf_counter() - start < 60


def test_is_synthetic_dataset_recognises_generated_folders_only(synthetic_root: Path, tmp_path: Path) -> None:
    assert is_synthetic_dataset(synthetic_root)
    marker = json.loads((synthetic_root / "synthetic.json").read_text())
    assert marker["generator"] == "brain_mtl.synthetic" and marker["seed"] == 3
    # A folder generated before the marker existed: recognised by the generator's exact manifest columns.
    older = tmp_path / "older"
    older.mkdir()
    shutil.copy(synthetic_root / "manifest.csv", older / "manifest.csv")
    assert is_synthetic_dataset(older)
    # Someone else's manifest, or a stray synthetic.json of another tool: not synthetic.
    other = tmp_path / "other"
    other.mkdir()
    (other / "manifest.csv").write_text("path,class\nclassification_task/train/glioma/a.jpg,glioma\n")
    (other / "synthetic.json").write_text('{"generator": "someone else"}')
    assert not is_synthetic_dataset(other)
