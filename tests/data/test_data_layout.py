"""The BRISC layout in one place: names formatted and parsed back, class folders under any accepted spelling."""

from __future__ import annotations

from pathlib import Path

import pytest

from brain_mtl.classes import CLASS_NAMES, NO_TUMOR
from brain_mtl.data.layout import (
    VIEWS,
    class_folders,
    classification_split_dir,
    dataset_exists,
    find_nested_root,
    format_name,
    parse_name,
    resolve_class,
    segmentation_dirs,
)
from tests.data.data_helpers import TreeBuilder


@pytest.mark.parametrize("label", range(len(CLASS_NAMES)))
@pytest.mark.parametrize("view", VIEWS)
def test_format_name_is_read_back_by_parse_name(label: int, view: str) -> None:
    name = format_name("test", 7, label, view)
    assert name.endswith(".jpg") and "_00007_" in name
    code, parsed_view = parse_name(Path(name).stem)
    assert parsed_view == view and resolve_class(code) == label


def test_resolve_class_knows_the_spellings_and_never_guesses() -> None:
    assert resolve_class("NoTumor") == NO_TUMOR and resolve_class("nt") == NO_TUMOR
    assert resolve_class("healthy") is None
    assert resolve_class("healthy", {"healthy": "no_tumor"}) == NO_TUMOR


def test_class_folders_of_a_split_under_any_spelling(tree: TreeBuilder) -> None:
    split_dir = classification_split_dir(tree.root, "train")
    (split_dir / "no_tumor").rename(split_dir / "notumor")
    (split_dir / "glioma").rename(split_dir / "healthy_looking")  # unknown without a map: left out
    (split_dir / ".hidden").mkdir()
    folders = class_folders(split_dir)
    assert folders == {1: [split_dir / "meningioma"], 2: [split_dir / "pituitary"], NO_TUMOR: [split_dir / "notumor"]}
    assert class_folders(split_dir, {"healthy_looking": "glioma"})[0] == [split_dir / "healthy_looking"]
    assert class_folders(tree.root / "missing") == {}


def test_dataset_root_helpers(tree: TreeBuilder, tmp_path: Path) -> None:
    images, masks = segmentation_dirs(tree.root, "train")
    assert images.is_dir() and masks.is_dir() and images.parent == masks.parent
    assert dataset_exists(tree.root) and not dataset_exists(tmp_path / "nothing")
    assert find_nested_root(tree.root.parent) == tree.root
