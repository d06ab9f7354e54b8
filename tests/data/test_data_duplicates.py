"""One grouping by content hash, one twin lookup, and the leakage check typed against the real DataModule."""

from __future__ import annotations

import shutil
from pathlib import Path

from brain_mtl.data import BrainTumorDataModule
from brain_mtl.data.duplicates import duplicate_groups, group_by_digest
from brain_mtl.data.index import Twins, index_dataset
from brain_mtl.data.records import ImageRecord
from brain_mtl.evaluation.leakage import datamodule_duplicates
from tests.data.data_helpers import TreeBuilder


def _record(name: str, split: str, task: str, digest: str, label: int = 0) -> ImageRecord:
    return ImageRecord(path=Path(f"{split}/{task}/{name}.jpg"), label=label, split=split, task=task, digest=digest)


def test_group_by_digest_keeps_groups_of_two_or_more_in_order() -> None:
    items = ["a1", "b1", "a2", "c1", "b2", "a3", "x"]
    assert group_by_digest(items, lambda s: s[0] if s != "x" else "") == [["a1", "a2", "a3"], ["b1", "b2"]]


def test_twins_by_name_first_then_by_content_same_split_first() -> None:
    seg_train = _record("same_name", "train", "segmentation", "D1")
    seg_test = _record("other", "test", "segmentation", "D2")
    seg_train_copy = _record("copy", "train", "segmentation", "D2")
    twins = Twins([seg_train, seg_test, seg_train_copy, _record("n", "train", "classification", "D2")], "segmentation")
    assert twins.of(_record("same_name", "train", "classification", "zz")) == [seg_train]  # by name
    assert twins.of(_record("same_name", "test", "classification", "zz")) == []  # names pair within a split only
    assert twins.of(_record("renamed", "test", "classification", "D2")) == [seg_test, seg_train_copy]
    assert twins.first(_record("renamed", "train", "classification", "D2")) == seg_train_copy
    assert twins.first(_record("unknown", "train", "classification", "")) is None


def test_datamodule_leakage_before_setup_indexes_its_root(tree: TreeBuilder, tmp_path: Path) -> None:
    source = tree.cls("train", "glioma", "gl")
    leaked = tree.root / "classification_task" / "test" / "glioma" / "brisc2025_test_00999_gl_ax_t1.jpg"
    shutil.copyfile(source, leaked)
    datamodule = BrainTumorDataModule(root=str(tree.root), num_workers=0)
    assert datamodule.index is None
    groups, note = datamodule_duplicates(datamodule, "test", [])
    assert groups == [{"train": [str(source)], "evaluated": [str(leaked)]}] and "content hash" in note
    # The same answer through the index the DataModule builds in setup.
    datamodule.setup("test")
    assert datamodule_duplicates(datamodule, "test", [])[0] == groups
    assert len(duplicate_groups(datamodule.index)) == 1 == len(duplicate_groups(index_dataset(tree.root)))

    missing = BrainTumorDataModule(root=str(tmp_path / "missing"), num_workers=0)
    groups, note = datamodule_duplicates(missing, "test", [])
    assert groups is None and "does not exist" in note
