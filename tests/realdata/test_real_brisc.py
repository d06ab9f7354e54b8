"""The real BRISC 2025 training split: what check-data says, the near-duplicate-aware split, and a short fit."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from lightning.pytorch import Trainer, seed_everything

from brain_mtl import BrainTumorDataModule, BrainTumorModule
from brain_mtl.data.near_duplicates import NEAR_DUPLICATE_DISTANCE, hamming_distances
from brain_mtl.data.split import carve_validation
from brain_mtl.data.summary import summarize

pytestmark = pytest.mark.realdata


def test_check_data_reports_the_known_quirks_and_nothing_else(real_index) -> None:
    summary = summarize(real_index)
    assert real_index.errors == [] and real_index.warnings == [], [str(p) for p in real_index.problems[:5]]
    sizes = summary["image_sizes"]
    assert sizes["distinct"] > 100 and sizes["non_square"] > 0  # 167 sizes, 474 non-square in the train split
    assert {"1", "3"} <= set(sizes["stored_channels"])  # gray and RGB JPEGs
    assert summary["duplicates"]["groups"] > 0 and summary["near_duplicates"]["groups"] > 0
    assert summary["mask_area"]["train"]["min_percent"] < 0.1  # tumours down to a few pixels
    assert summary["mask_area"]["train"]["empty"] == 0


def straddling_pairs(index) -> int:
    """Near-duplicate pairs with one image in train and the other in val."""
    cls = [r for r in index.records if r.task == "classification"]
    train = [r.phash for r in cls if r.split == "train"]
    val = [r.phash for r in cls if r.split == "val"]
    return int((hamming_distances(val, train) <= NEAR_DUPLICATE_DISTANCE).sum())


def test_validation_split_holds_no_near_duplicate_of_a_training_image(real_index) -> None:
    carved = carve_validation(real_index, 0.1, seed=42)
    assert len(carved.classification("val")) >= 450
    assert straddling_pairs(carved) == 0
    assert straddling_pairs(carve_validation(real_index, 0.1, seed=42, near_duplicate_distance=None)) > 0


def real_slice(root: Path, target: Path, per_class: int) -> Path:
    """A BRISC-layout copy of the first ``per_class`` scans of each class (with their masks)."""
    for class_dir in sorted((root / "classification_task" / "train").iterdir()):
        out = target / "classification_task" / "train" / class_dir.name
        out.mkdir(parents=True)
        for image in sorted(class_dir.glob("*.jpg"))[:per_class]:
            shutil.copy(image, out / image.name)
            mask = root / "segmentation_task" / "train" / "masks" / f"{image.stem}.png"
            if mask.exists():
                for sub, source in (("images", image), ("masks", mask)):
                    folder = target / "segmentation_task" / "train" / sub
                    folder.mkdir(parents=True, exist_ok=True)
                    shutil.copy(source, folder / source.name)
    return target


def test_a_one_epoch_fit_on_a_slice_learns(real_root: Path, tmp_path: Path) -> None:
    seed_everything(0)
    root = real_slice(real_root, tmp_path / "slice", per_class=150)
    datamodule = BrainTumorDataModule(
        root=str(root), image_size=96, batch_size=16, num_workers=0, val_fraction=0.2, cache_images=True
    )
    model = BrainTumorModule(
        base_channels=8, classifier_hidden=32, classifier_dropout=0.1, mask_loss="dice_bce", lr=3e-3
    )
    trainer = Trainer(
        max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        inference_mode=False,  # validate() before fit() must not turn the weights into inference tensors
        enable_model_summary=False, default_root_dir=tmp_path,
    )  # fmt: skip
    before = trainer.validate(model, datamodule=datamodule, verbose=False)[0]
    trainer.fit(model, datamodule=datamodule)
    after = trainer.validate(model, datamodule=datamodule, verbose=False)[0]
    assert np.isfinite(after["val/loss"])
    # One epoch of 23 steps: the validation loss is still noisy (fresh BatchNorm statistics), but both heads learn.
    assert after["val/cls/acc"] > 0.4 > before["val/cls/acc"], (before, after)  # four classes: chance is about 0.25
    assert after["val/seg/pixel_acc"] > 0.8 > before["val/seg/pixel_acc"], (before, after)  # no longer paints all
