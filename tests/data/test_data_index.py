from __future__ import annotations

import csv
import shutil
from collections import Counter
from pathlib import Path

import pytest

from brain_mtl.classes import CLASS_NAMES, NO_TUMOR
from brain_mtl.data import DatasetError
from brain_mtl.data.duplicates import cross_split_duplicates, find_duplicates
from brain_mtl.data.index import index_dataset
from brain_mtl.data.layout import parse_name
from brain_mtl.data.split import carve_validation
from tests.data.data_helpers import N_TEST, N_TRAIN, TreeBuilder, write_image, write_mask


def kinds_for(index, path: Path) -> set[str]:
    return {p.kind for p in index.errors if p.path == path}


# ------------------------------------------------------------------------------------------------------------
# Indexing a good folder
# ------------------------------------------------------------------------------------------------------------
def test_index_counts_match_the_manifest(synthetic_root: Path) -> None:
    index = index_dataset(synthetic_root)
    assert index.errors == []
    with open(synthetic_root / "manifest.csv") as handle:
        rows = list(csv.DictReader(handle))
    expected = Counter((r["task"], r["split"], r["class"]) for r in rows)
    found = Counter((r.task, r.split, CLASS_NAMES[r.label]) for r in index.records)
    assert found == expected
    assert len(index.classification("train")) == N_TRAIN
    assert len(index.classification("test")) == N_TEST
    # Segmentation holds exactly the tumour images, each with its mask.
    seg = index.segmentation("train")
    assert len(seg) == sum(r.label != NO_TUMOR for r in index.classification("train"))
    assert all(r.mask_path is not None and r.mask_path.stem == r.path.stem for r in seg)
    assert {r.view for r in index.records} <= {"ax", "co", "sa"}


def test_hand_made_tree_counts(tree: TreeBuilder) -> None:
    index = index_dataset(tree.root)
    assert index.errors == []
    assert Counter(r.label for r in index.classification("train")) == {0: 3, 1: 3, 2: 3, 3: 3}
    assert len(index.segmentation("test")) == 9
    assert index.splits == ["train", "test"]


@pytest.mark.parametrize(
    ("stem", "expected"),
    [
        ("brisc2025_train_00010_gl_ax_t1", ("gl", "ax")),
        ("brisc2025_test_00001_NT_sa_t1", ("nt", "sa")),
        ("Tr-me_0010", ("me", "?")),
        ("scan_0001", (None, "?")),
    ],
)
def test_parse_name(stem: str, expected: tuple) -> None:
    assert parse_name(stem) == expected


def test_nt_code_and_other_folder_spellings_are_no_tumor(tmp_path: Path) -> None:
    t = TreeBuilder(tmp_path / "d").valid(splits=("train",))
    path = t.cls("train", "notumor", "nt")
    index = index_dataset(t.root)
    assert index.errors == []
    assert next(r for r in index.records if r.path == path).label == NO_TUMOR


def test_class_name_map_makes_an_unknown_folder_known(tmp_path: Path) -> None:
    t = TreeBuilder(tmp_path / "d").valid(splits=("train",))
    folder = t.root / "classification_task" / "train" / "healthy"
    write_image(folder / "scan_0001.jpg")
    index = index_dataset(t.root)
    assert kinds_for(index, folder) == {"unknown_class"}
    index = index_dataset(t.root, class_name_map={"healthy": "no_tumor"})
    assert index.errors == []
    assert Counter(r.label for r in index.classification("train"))[NO_TUMOR] == 4


# ------------------------------------------------------------------------------------------------------------
# Each bad input produces its message, naming the file
# ------------------------------------------------------------------------------------------------------------
def test_missing_mask(tree: TreeBuilder) -> None:
    _, seg, mask = tree.pair("train", "glioma", "gl")
    mask.unlink()
    index = index_dataset(tree.root)
    (problem,) = index.errors
    assert problem.kind == "missing_mask" and problem.path == seg
    assert "missing mask" in str(problem) and str(seg) in str(problem)


def test_mask_without_image(tree: TreeBuilder) -> None:
    _, seg, mask = tree.pair("train", "glioma", "gl")
    seg.unlink()
    index = index_dataset(tree.root)
    (problem,) = index.errors
    assert problem.kind == "orphan_mask" and problem.path == mask
    assert "mask without image" in str(problem)


def test_unknown_class_code_in_file_name(tree: TreeBuilder) -> None:
    bad = tree.cls("train", "glioma", "xx")
    index = index_dataset(tree.root)
    (problem,) = index.errors
    assert problem.kind == "unknown_class" and problem.path == bad
    assert "'xx'" in problem.message and "class_name_map" in problem.fix


def test_unknown_class_code_in_segmentation_name(tree: TreeBuilder) -> None:
    _, seg, _ = tree.pair("train", "glioma", "gl")
    renamed = seg.with_name(seg.name.replace("_gl_", "_zz_"))
    seg.rename(renamed)
    mask = tree.root / "segmentation_task" / "train" / "masks" / (seg.stem + ".png")
    mask.rename(mask.with_name(renamed.stem + ".png"))
    index = index_dataset(tree.root)
    assert kinds_for(index, renamed) == {"unknown_class"}


def test_unknown_class_folder(tree: TreeBuilder) -> None:
    folder = tree.root / "classification_task" / "train" / "astrocytoma"
    write_image(folder / "a.jpg")
    index = index_dataset(tree.root)
    (problem,) = index.errors
    assert problem.kind == "unknown_class" and problem.path == folder
    assert "'astrocytoma'" in problem.message


def test_image_mask_size_mismatch(tree: TreeBuilder) -> None:
    _, seg, mask = tree.pair("train", "meningioma", "me", mask_size=(32, 40))
    index = index_dataset(tree.root)
    (problem,) = index.errors
    assert problem.kind == "size_mismatch" and problem.path == mask
    assert "40x32" in problem.message and "32x32" in problem.message and seg.name in problem.message


def test_text_named_jpg_is_not_an_image(tree: TreeBuilder) -> None:
    bad = tree.cls("train", "pituitary", "pi")
    bad.write_bytes(b"this is not a jpeg at all" * 10 + b"\xff\xd9")
    index = index_dataset(tree.root)
    (problem,) = index.errors
    assert problem.kind == "not_an_image" and problem.path == bad


def test_empty_file(tree: TreeBuilder) -> None:
    bad = tree.cls("test", "no_tumor", "no")
    bad.write_bytes(b"")
    index = index_dataset(tree.root)
    (problem,) = index.errors
    assert problem.kind == "unreadable" and problem.path == bad and "empty" in problem.message


def test_truncated_jpeg(tree: TreeBuilder) -> None:
    bad = tree.cls("train", "glioma", "gl", view="co")
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    index = index_dataset(tree.root)
    (problem,) = index.errors
    assert problem.kind == "truncated" and problem.path == bad


def test_truncated_mask_png(tree: TreeBuilder) -> None:
    _, _, mask = tree.pair("train", "glioma", "gl")
    mask.write_bytes(mask.read_bytes()[:-20])
    index = index_dataset(tree.root)
    assert kinds_for(index, mask) == {"truncated"}


def test_root_that_does_not_exist(tmp_path: Path) -> None:
    index = index_dataset(tmp_path / "nowhere")
    (problem,) = index.errors
    assert problem.kind == "bad_root" and problem.path == tmp_path / "nowhere" and "does not exist" in problem.message


def test_empty_root(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (problem,) = index_dataset(tmp_path / "empty").errors
    assert problem.kind == "bad_root" and "empty" in problem.message


def test_wrong_root_suggests_the_right_one(tree: TreeBuilder) -> None:
    wrong = tree.root / "classification_task"
    (problem,) = index_dataset(wrong).errors
    assert problem.kind == "bad_root" and problem.path == wrong
    assert str(tree.root) in problem.fix
    (problem,) = index_dataset(tree.root.parent).errors  # one level too high
    assert str(tree.root) in problem.fix


def test_missing_segmentation_task(tree: TreeBuilder) -> None:
    shutil.rmtree(tree.root / "segmentation_task")
    index = index_dataset(tree.root)
    # Its own kind: only training stops on it (a classification-only folder can be tested on).
    assert {p.kind for p in index.errors} == {"missing_segmentation"}
    assert index.errors[0].path == tree.root / "segmentation_task"


def test_conflicting_labels_folder_versus_code(tree: TreeBuilder) -> None:
    bad = tree.cls("train", "glioma", "me")
    (problem,) = index_dataset(tree.root).errors
    assert problem.kind == "label_conflict" and problem.path == bad
    assert "glioma" in problem.message and "meningioma" in problem.message


def test_conflicting_labels_segmentation_versus_classification(tree: TreeBuilder) -> None:
    cls_path, seg, mask = tree.pair("train", "glioma", "gl")
    # Same image (same name and bytes) filed as pituitary in segmentation_task.
    renamed = seg.with_name(seg.name.replace("_gl_", "_pi_"))
    seg.rename(renamed)
    mask.rename(mask.with_name(renamed.stem + ".png"))
    index = index_dataset(tree.root)
    assert kinds_for(index, renamed) == {"label_conflict"}
    assert str(cls_path) in next(p.message for p in index.errors if p.path == renamed)


def test_conflicting_labels_identical_files_in_two_classes(tree: TreeBuilder) -> None:
    first = tree.cls("train", "glioma", "gl")
    second = tree.root / "classification_task" / "train" / "pituitary" / "scan_0001.jpg"  # no code in the name
    shutil.copy(first, second)
    (problem,) = index_dataset(tree.root).errors
    assert problem.kind == "label_conflict" and str(second) in problem.message and str(first) in problem.message


def test_segmentation_image_with_empty_mask(tree: TreeBuilder) -> None:
    _, _, mask = tree.pair("test", "pituitary", "pi", empty=True)
    (problem,) = index_dataset(tree.root).errors
    assert problem.kind == "empty_mask" and problem.path == mask
    assert "255" in problem.fix


def test_mask_stored_as_zero_one_reads_empty(tree: TreeBuilder) -> None:
    _, _, mask = tree.pair("train", "glioma", "gl")
    import cv2

    cv2.imwrite(str(mask), (cv2.imread(str(mask), cv2.IMREAD_GRAYSCALE) > 0).astype("uint8"))
    assert kinds_for(index_dataset(tree.root), mask) == {"empty_mask"}


def test_every_problem_is_reported_at_once(tree: TreeBuilder) -> None:
    _, seg_a, mask_a = tree.pair("train", "glioma", "gl")
    mask_a.unlink()
    bad_code = tree.cls("train", "glioma", "qq")
    truncated = tree.cls("test", "meningioma", "me")
    truncated.write_bytes(truncated.read_bytes()[:100])
    _, _, empty_mask = tree.pair("train", "meningioma", "me", empty=True)
    orphan = write_mask(tree.root / "segmentation_task" / "test" / "masks" / "lonely.png")
    index = index_dataset(tree.root)
    with pytest.raises(DatasetError) as info:
        index.raise_for_errors()
    message = str(info.value)
    lines = [line for line in message.splitlines() if line.startswith("  - ")]
    assert len(lines) == len(index.errors) >= 5
    for path in (seg_a, bad_code, truncated, empty_mask, orphan):
        assert sum(str(path) in line for line in lines) >= 1, path
    assert isinstance(info.value, ValueError)


def test_warnings_do_not_fail(tree: TreeBuilder) -> None:
    (tree.root / "classification_task" / "train" / "glioma" / "notes.txt").write_text("hello")
    (tree.root / "classification_task" / "validation").mkdir()
    index = index_dataset(tree.root)
    assert index.errors == []
    assert {p.kind for p in index.warnings} == {"not_an_image", "unknown_split"}
    index.raise_for_errors()


# ------------------------------------------------------------------------------------------------------------
# Duplicates
# ------------------------------------------------------------------------------------------------------------
def test_find_duplicates(tmp_path: Path) -> None:
    a = write_image(tmp_path / "a.jpg", seed=1)
    b = write_image(tmp_path / "b.jpg", seed=2)
    c = tmp_path / "sub" / "c.jpg"
    c.parent.mkdir()
    shutil.copy(a, c)
    d = tmp_path / "d.jpg"
    shutil.copy(b, d)
    write_image(tmp_path / "e.jpg", seed=3)
    assert find_duplicates(sorted(tmp_path.rglob("*.jpg"))) == [[a, c], [b, d]]


def test_cross_split_duplicates(tree: TreeBuilder) -> None:
    train_copy = tree.root / "classification_task" / "train" / "glioma"
    source = sorted(train_copy.glob("*.jpg"))[0]
    test_copy = tree.root / "classification_task" / "test" / "glioma" / "copy_of_train.jpg"
    shutil.copy(source, test_copy)
    within = tree.root / "classification_task" / "train" / "glioma" / "copy_within.jpg"
    shutil.copy(sorted(train_copy.glob("*.jpg"))[1], within)
    index = index_dataset(tree.root)
    assert cross_split_duplicates(index) == [sorted([source, test_copy])]
    assert cross_split_duplicates(tree.root) == [sorted([source, test_copy])]  # from a root, hashing only
    assert [p.kind for p in index.warnings] == ["cross_split_duplicate"]


# ------------------------------------------------------------------------------------------------------------
# Validation split
# ------------------------------------------------------------------------------------------------------------
def test_stratified_validation_split(synthetic_root: Path) -> None:
    index = index_dataset(synthetic_root)
    carved = carve_validation(index, 0.25, seed=1)
    train_counts = Counter(r.label for r in index.classification("train"))
    val_counts = Counter(r.label for r in carved.classification("val"))
    for label, n in train_counts.items():
        assert val_counts[label] == max(1, round(0.25 * n)), CLASS_NAMES[label]
    assert len(carved.classification("train")) + len(carved.classification("val")) == N_TRAIN
    assert len(carved.classification("test")) == N_TEST
    assert index.classification("val") == []  # the input index is not modified


def test_validation_split_is_seeded(synthetic_root: Path) -> None:
    index = index_dataset(synthetic_root)
    pick = lambda seed: sorted(str(r.path) for r in carve_validation(index, 0.2, seed).classification("val"))  # noqa: E731
    assert pick(5) == pick(5)
    assert pick(5) != pick(6)


def test_no_image_in_train_and_validation(tmp_path: Path) -> None:
    t = TreeBuilder(tmp_path / "d").valid(per_class=6, splits=("train",))
    # A byte-identical copy under another name in another... same class: must follow its twin.
    for folder in ("glioma", "no_tumor"):
        files = sorted((t.root / "classification_task" / "train" / folder).glob("*.jpg"))
        for i, f in enumerate(files[:3]):
            shutil.copy(f, f.with_name(f"copy_{i}.jpg"))
    index = index_dataset(t.root)
    assert index.errors == []
    for seed in range(8):
        carved = carve_validation(index, 0.3, seed)
        train = [r for r in carved.records if r.split == "train"]
        val = [r for r in carved.records if r.split == "val"]
        assert val
        assert not {r.digest for r in train} & {r.digest for r in val}
        assert not {r.stem for r in train} & {r.stem for r in val}


def test_existing_val_folder_is_used(tmp_path: Path) -> None:
    t = TreeBuilder(tmp_path / "d").valid(per_class=2, splits=("train", "val", "test"))
    index = index_dataset(t.root)
    assert index.has_val_split
    carved = carve_validation(index, 0.5, 0)
    assert carved is index
    assert len(carved.classification("val")) == 8 and len(carved.classification("train")) == 8


def test_val_split_in_one_task_only_is_an_error(tree: TreeBuilder) -> None:
    tree.cls("val", "glioma", "gl")
    index = index_dataset(tree.root)
    assert [p.kind for p in index.errors] == ["missing_split"]
    assert index.errors[0].path == tree.root / "segmentation_task" / "val"
