"""The dataset preview finds class folders and masks the way the index does."""

from __future__ import annotations

import shutil

import numpy as np

from brain_mtl.classes import CLASS_NAMES, NO_TUMOR
from brain_mtl.data.preview import dataset_preview
from tests.data.data_helpers import TreeBuilder

TILE, CAPTION = 48, 16  # the preview's tile side, and the caption band sample_grid adds under each row


def _row(picture: np.ndarray, label: int) -> np.ndarray:
    top = label * (TILE + CAPTION)
    return picture[top : top + TILE, 110:]  # right of the row titles


def test_preview_finds_class_folders_under_other_spellings(tree: TreeBuilder) -> None:
    canonical = dataset_preview(tree.root, per_class=2, tile=TILE)
    assert _row(canonical, NO_TUMOR).min() < 255  # the premise: the healthy row shows images
    cls = tree.root / "classification_task" / "train"
    shutil.move(cls / "no_tumor", cls / "notumor")  # accepted by the index (Kaggle spelling)
    shutil.move(cls / "glioma", cls / "gliomas")  # a spelling only a class_name_map knows
    renamed = dataset_preview(tree.root, per_class=2, tile=TILE, class_name_map={"gliomas": "glioma"})
    assert renamed.shape == canonical.shape
    for label in range(len(CLASS_NAMES)):
        np.testing.assert_array_equal(_row(renamed, label), _row(canonical, label), err_msg=CLASS_NAMES[label])


def test_preview_draws_the_mask_of_each_tumour_image(tree: TreeBuilder) -> None:
    with_masks = dataset_preview(tree.root, per_class=2, tile=TILE)
    shutil.rmtree(tree.root / "segmentation_task")
    without = dataset_preview(tree.root, per_class=2, tile=TILE)
    glioma = CLASS_NAMES.index("glioma")
    assert not np.array_equal(_row(with_masks, glioma), _row(without, glioma))  # outlines drawn from the masks
    np.testing.assert_array_equal(_row(with_masks, NO_TUMOR), _row(without, NO_TUMOR))  # no mask, nothing drawn
