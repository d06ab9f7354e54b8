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

from brain_mtl.classes import CLASS_NAMES
from brain_mtl.commands.data import check_data_main, synth_main
from brain_mtl.data.index import index_dataset, parse_name
from brain_mtl.data.synthetic import generate_synthetic_dataset, is_synthetic_dataset, synthesize_slice

GLIOMA, MENINGIOMA, PITUITARY, NO_TUMOR = range(4)


def _centroid(mask: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(mask)
    return float(xs.mean()), float(ys.mean())


def _head(image: np.ndarray) -> np.ndarray:
    """The head region: everything brighter than the air, holes filled."""
    head = (cv2.GaussianBlur(image, (0, 0), 2) > 25).astype(np.uint8)
    contours, _ = cv2.findContours(head, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    filled = np.zeros_like(head)
    cv2.drawContours(filled, [max(contours, key=cv2.contourArea)], -1, 1, -1)
    return filled


def test_slices_are_deterministic_per_seed() -> None:
    a = synthesize_slice(np.random.default_rng(5), GLIOMA, "co", 96, 80)
    b = synthesize_slice(np.random.default_rng(5), GLIOMA, "co", 96, 80)
    c = synthesize_slice(np.random.default_rng(6), GLIOMA, "co", 96, 80)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    assert a[0].shape == (96, 80) and a[0].dtype == np.uint8 and a[1].dtype == bool


def test_classes_differ_by_place() -> None:
    """Meningioma against the skull, glioma inside a hemisphere, pituitary in the midline."""
    size = 128
    stats: dict[int, list[tuple[float, float, float]]] = {GLIOMA: [], MENINGIOMA: [], PITUITARY: []}
    for label in stats:
        for i in range(12):
            view = ("ax", "co", "sa")[i % 3]
            image, mask = synthesize_slice(np.random.default_rng([label, i]), label, view, size, size)
            assert mask.any()
            head = _head(image)
            depth = cv2.distanceTransform(head, cv2.DIST_L2, 5)
            cx, _ = _centroid(mask)
            head_cx, _ = _centroid(head)
            # Distance of the tumour's outermost pixel to the outside of the head.
            stats[label].append((float(depth[mask].min()), abs(cx - head_cx) / size, float(mask.mean())))
    min_depth = {k: np.median([s[0] for s in v]) for k, v in stats.items()}
    off_midline = {k: np.median([s[1] for s in v]) for k, v in stats.items()}
    assert min_depth[MENINGIOMA] < min_depth[GLIOMA]  # meningiomas reach the skull, gliomas stay inside
    assert min_depth[MENINGIOMA] < 0.12 * size
    assert off_midline[PITUITARY] < 0.02  # pituitary tumours sit on the midline
    assert off_midline[GLIOMA] > 0.05 and off_midline[MENINGIOMA] > 0.05
    areas = [s[2] for v in stats.values() for s in v]
    assert np.median(areas) > 0.008  # visible at ~128 px: median tumour area around 1-3% of the image
    assert np.mean(np.array(areas) < 0.003) < 0.1


def test_no_tumour_slices_have_no_mask_but_look_like_heads() -> None:
    image, mask = synthesize_slice(np.random.default_rng(0), NO_TUMOR, "ax", 128, 128)
    assert not mask.any()
    head = _head(image)
    assert 0.3 < head.mean() < 0.9  # a head in the middle, air around it
    assert image[head == 0].mean() < 15


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


# ------------------------------------------------------------------------------------------------------------
# Commands
# ------------------------------------------------------------------------------------------------------------
def test_synth_command(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "s"
    preview = tmp_path / "preview.png"
    assert (
        synth_main(["--root", str(root), "--train", "8", "--test", "4", "--seed", "1", "--preview", str(preview)]) == 0
    )
    out = capsys.readouterr().out
    assert "train: 8 images" in out and "test: 4 images" in out
    grid = cv2.imread(str(preview))
    assert grid is not None and grid.shape[0] > 100
    assert synth_main(["--root", str(root), "--train", "8"]) == 1
    assert "already holds a dataset" in capsys.readouterr().err


def test_check_data_command_good_and_bad(synthetic_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert check_data_main(["--root", str(synthetic_root)]) == 0
    out = capsys.readouterr().out
    for name in CLASS_NAMES:
        assert name in out
    assert "0 error(s)" in out and "image sizes" in out and "tumour area" in out and "duplicates" in out

    assert check_data_main(["--root", str(tmp_path / "missing")]) == 1
    out = capsys.readouterr().out
    assert "ERROR" in out and str(tmp_path / "missing") in out

    assert check_data_main(["--root", str(synthetic_root), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["errors"] == 0
    assert sum(summary["counts"]["classification"]["train"]["glioma"].values()) > 0


@pytest.mark.slow
def test_default_synthetic_set_is_fast_enough(tmp_path: Path) -> None:
    start = time.perf_counter()
    generate_synthetic_dataset(tmp_path / "full", 500, 100, seed=42)
    assert time.perf_counter() - start < 60


def test_is_synthetic_dataset_recognises_generated_folders_only(synthetic_root: Path, tmp_path: Path) -> None:
    assert is_synthetic_dataset(synthetic_root)
    marker = json.loads((synthetic_root / "synthetic.json").read_text())
    assert marker["generator"] == "brain_mtl.data.synthetic" and marker["seed"] == 3
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
    assert not is_synthetic_dataset(tmp_path / "missing")
