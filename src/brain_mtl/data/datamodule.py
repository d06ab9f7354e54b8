"""``BrainTumorDataModule``: indexes and checks a BRISC-layout folder, carves validation, pairs the two loaders."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal

import albumentations as A
import lightning as L
from jsonargparse.typing import NonNegativeInt, PositiveInt, restricted_number_type
from lightning.pytorch.utilities import CombinedLoader
from torch.utils.data import DataLoader, Dataset

from brain_mtl.classes import NO_TUMOR
from brain_mtl.data.datasets import (
    ClassificationDataset,
    EvaluationDataset,
    ImageCache,
    SampleSpec,
    SegmentationDataset,
)
from brain_mtl.data.errors import DatasetError
from brain_mtl.data.index import Twins, index_dataset
from brain_mtl.data.layout import CLASSIFICATION_TASK, SEGMENTATION_TASK, dataset_exists
from brain_mtl.data.near_duplicates import NEAR_DUPLICATE_DISTANCE
from brain_mtl.data.records import DatasetIndex, ImageRecord
from brain_mtl.data.split import carve_fold, carve_validation
from brain_mtl.data.synthetic import generate_synthetic_dataset, is_synthetic_dataset
from brain_mtl.data.transforms import AUGMENT_LEVELS, build_resize, build_transforms

log = logging.getLogger(__name__)

TRAIN_MODES = ("max_size_cycle", "min_size", "max_size")


def default_num_workers() -> int:
    """Loader worker processes from the CPUs this process may use: one core is left to the training loop.

    ``min(8, cpus - 1)``: 1 on 2 cores, 3 on 4, 7 on 8, 8 from 9 cores up; 0 (load in the main process) on 1 core.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cpus = os.cpu_count() or 1
    return max(0, min(8, cpus - 1))


ShareBelowOne = restricted_number_type("ShareBelowOne", float, [(">=", 0.0), ("<", 1.0)])
"""A share in [0, 1): the config type of ``val_fraction`` (jsonargparse refuses other values with one line)."""

HammingDistance = restricted_number_type("HammingDistance", int, [(">=", 0), ("<=", 64)])
"""A Hamming distance between two 64-bit hashes: 0 to 64."""


class BrainTumorDataModule(L.LightningDataModule):
    """Brain MRI slices for the joint segmentation + classification model, from a folder in the BRISC layout.

    ``setup`` indexes the folder and checks every file (one :class:`~brain_mtl.data.errors.DatasetError` lists
    every problem), then carves a stratified, seeded validation split from train unless the folder has a ``val``
    split; an image (same name or same bytes) never sits in train and validation at once, in either loader.

    Loaders: training returns ``CombinedLoader({"seg": ..., "cls": ...})``; validation and test return
    ``[segmentation loader, classification loader]`` (the segmentation loader holds the tumour images with masks,
    the classification loader every image of the split, all four classes). Samples are dicts with ``image``
    ``(3, H, W)`` normalised float, ``mask`` ``(1, H, W)`` float in {0, 1} (segmentation), ``label`` long,
    ``path`` str, ``orig_size`` ``LongTensor([H, W])``.

    Args:
        root: dataset folder in the BRISC layout (classification_task/{train,test[,val]}/<class>/ and
            segmentation_task/{train,test[,val]}/{images,masks}/); null uses the synthetic dataset in
            synthetic_root, generated on first use. A folder given here must exist: nothing is ever generated
            into it, and a missing one is an error.
        image_size: side of the square network input in pixels (images are resized, or padded with
            keep_aspect).
        batch_size: images per batch, for each of the two training streams and for evaluation.
        num_workers: loader worker processes per loader; null picks min(8, CPUs - 1) (1 on 2 cores).
        val_fraction: share of each class's training images used for validation when the folder has no val
            split (0 disables validation).
        seed: seed of the validation split and of the synthetic data.
        keep_aspect: scale the longest side to image_size and pad with black instead of stretching to a square.
        augment: training augmentation strength: none, light, default (flip, +-15 deg rotation, mild
            brightness/contrast/gamma) or strong.
        healthy_in_segmentation: also train the segmentation stream on no-tumour images with an empty mask
            (they are known tumour-free; this stops the segmenter from painting masks on healthy scans).
        cache_images: decode and resize every train/val image once in setup and keep it in memory (about
            image_size^2 * 3 bytes per image) instead of decoding it every epoch.
        train_mode: how the two training loaders are paired when their lengths differ (CombinedLoader mode):
            max_size_cycle (the shorter one restarts), min_size (stop with the shorter), max_size.
        class_name_map: extra class spellings (folder names or file-name codes) -> class name, e.g.
            {"notumor": "no_tumor", "glioma_tumor": "glioma"}; merged over the built-in table.
        synthetic_root: where the synthetic default dataset lives (used only when root is null); generated
            there by prepare_data when the folder is missing or empty.
        synthetic_train: training images of the generated synthetic dataset.
        synthetic_test: test images of the generated synthetic dataset.
        pin_memory: page-locked batches for faster host-to-GPU copies (use with CUDA).
        near_duplicate_distance: the carved validation split keeps images whose perceptual hashes are at most this
            many bits apart (the same slice re-encoded, or a neighbouring slice of one series) on one side of it;
            null groups byte-identical images only.
        test_split: the split that ``test`` evaluates: ``test``, or ``val`` (the carved validation split, to report
            on it with the full evaluation report while the test split stays unseen).
        num_folds: cross-validation: split train into this many folds (stratified by class, near-duplicate groups
            kept whole, seeded by ``seed``) and validate on fold ``fold`` instead of carving ``val_fraction``; null:
            the single carved split.
        fold: the validation fold, 0 to num_folds - 1 (with num_folds).
    """

    def __init__(
        self,
        root: str | None = None,
        image_size: PositiveInt = 256,
        batch_size: PositiveInt = 16,
        num_workers: NonNegativeInt | None = None,
        val_fraction: ShareBelowOne = 0.1,
        seed: int = 42,
        keep_aspect: bool = False,
        augment: Literal["none", "light", "default", "strong"] = "default",
        healthy_in_segmentation: bool = True,
        cache_images: bool = False,
        train_mode: Literal["max_size_cycle", "min_size", "max_size"] = "max_size_cycle",
        class_name_map: dict[str, str] | None = None,
        synthetic_root: str = "data/synthetic",
        synthetic_train: int = 500,
        synthetic_test: int = 100,
        pin_memory: bool = False,
        near_duplicate_distance: HammingDistance | None = NEAR_DUPLICATE_DISTANCE,
        test_split: Literal["test", "val"] = "test",
        num_folds: PositiveInt | None = None,
        fold: NonNegativeInt = 0,
    ) -> None:
        # The config types (PositiveInt, ...) are int and float subclasses: saved as plain numbers, a checkpoint's
        # hyperparameters stay loadable with weights_only=True.
        image_size, batch_size, val_fraction = int(image_size), int(batch_size), float(val_fraction)
        num_workers = None if num_workers is None else int(num_workers)
        near_duplicate_distance = None if near_duplicate_distance is None else int(near_duplicate_distance)
        num_folds, fold = (None if num_folds is None else int(num_folds)), int(fold)
        super().__init__()
        self.save_hyperparameters()
        if augment not in AUGMENT_LEVELS:
            raise ValueError(f"augment must be one of {AUGMENT_LEVELS}, got {augment!r}")
        if train_mode not in TRAIN_MODES:
            raise ValueError(f"train_mode must be one of {TRAIN_MODES}, got {train_mode!r}")
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        if near_duplicate_distance is not None and not 0 <= near_duplicate_distance <= 64:
            raise ValueError(
                f"near_duplicate_distance must be null or a Hamming distance in 0..64, got {near_duplicate_distance}"
            )
        if num_folds is None and fold != 0:
            raise ValueError(f"data.fold {fold} needs data.num_folds (the number of folds)")
        if num_folds is not None and not (num_folds >= 2 and 0 <= fold < num_folds):
            raise ValueError(
                f"cross-validation needs num_folds >= 2 and 0 <= fold < num_folds, got {num_folds}, {fold}"
            )
        if test_split not in ("test", "val"):
            raise ValueError(f"test_split must be 'test' or 'val', got {test_split!r}")
        if batch_size < 1 or image_size < 8:
            raise ValueError(f"batch_size must be >= 1 and image_size >= 8, got {batch_size} and {image_size}")
        if num_workers is not None and num_workers < 0:
            raise ValueError(f"num_workers must be null or >= 0, got {num_workers}")
        self.root: Path | None = None if root is None else Path(root)
        """The folder given as ``root`` (None: the synthetic default in ``synthetic_root``)."""
        self.synthetic_root = Path(synthetic_root)
        self.image_size = image_size
        self.batch_size = batch_size
        self.num_workers = default_num_workers() if num_workers is None else num_workers
        self.val_fraction = val_fraction
        self.near_duplicate_distance = near_duplicate_distance
        self.test_split = test_split
        self.num_folds = num_folds
        self.fold = fold
        self._masks_known: dict[tuple[int, str], bool] = {}
        self.seed = seed
        self.keep_aspect = keep_aspect
        self.augment = augment
        self.healthy_in_segmentation = healthy_in_segmentation
        self.cache_images = cache_images
        self.train_mode = train_mode
        self.class_name_map = dict(class_name_map) if class_name_map else None
        self.synthetic_train = synthetic_train
        self.synthetic_test = synthetic_test
        self.pin_memory = pin_memory
        self.index: DatasetIndex | None = None
        self.cache: ImageCache | None = None

    # ------------------------------------------------------------------------------------------------------
    # The dataset folder
    # ------------------------------------------------------------------------------------------------------
    @property
    def dataset_root(self) -> Path:
        """The dataset folder in use: ``root``, or ``synthetic_root`` when ``root`` is null."""
        return self.synthetic_root if self.root is None else self.root

    @property
    def is_synthetic(self) -> bool:
        """Whether the data is synthetic.

        True when the folder was written by the generator (``brain_mtl synth`` or the synthetic default, see
        :func:`~brain_mtl.data.synthetic.is_synthetic_dataset`), or ``root`` is null and the synthetic default is
        yet to be generated.
        """
        if is_synthetic_dataset(self.dataset_root):
            return True
        return self.root is None and not dataset_exists(self.dataset_root)

    def _require_root(self) -> None:
        """A folder given as ``root`` must exist: a mistyped path must not become a fresh synthetic dataset."""
        if self.root is not None and not self.root.exists():
            raise DatasetError(
                f"{self.root}: the dataset folder given as data.root does not exist (nothing is ever generated "
                f"into data.root). Fix: check the path, or leave data.root unset (null) to use the synthetic "
                f"dataset in data.synthetic_root ({self.synthetic_root})."
            )
        if self.root is None and not self.synthetic_root.exists():
            raise DatasetError(
                f"{self.synthetic_root}: the synthetic dataset (data.root is null) has not been generated yet. "
                "Fix: call datamodule.prepare_data() before setup() (the Trainer does), or run "
                f"`python -m brain_mtl synth --root {self.synthetic_root}`."
            )

    # ------------------------------------------------------------------------------------------------------
    # Lightning hooks
    # ------------------------------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        """Check that a given ``root`` exists; with ``root`` null, generate the synthetic default if missing.

        Raises:
            DatasetError: ``root`` is given and does not exist; or ``root`` is null and ``synthetic_root`` holds
                something other than a dataset (nothing is generated over it).
        """
        if self.root is not None:
            self._require_root()
            return
        if dataset_exists(self.synthetic_root):
            return
        target = self.synthetic_root
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise DatasetError(
                f"{target}: data.synthetic_root holds no dataset but is not empty; the synthetic dataset is never "
                "generated over other files. Fix: point data.synthetic_root at a missing or empty folder, or "
                "empty this one."
            )
        log.info(
            "data.root is null: generating the synthetic dataset (%d train / %d test images) in %s",
            self.synthetic_train,
            self.synthetic_test,
            target,
        )
        report = generate_synthetic_dataset(target, self.synthetic_train, self.synthetic_test, seed=self.seed)
        log.info("synthetic dataset written in %.1f s", report.seconds)

    def setup(self, stage: str | None = None) -> None:
        """Index and check the folder (once), carve validation, fill the image cache when enabled.

        Raises:
            DatasetError: ``root`` is given and does not exist, or the folder has problems; the message lists all
                of them, one per line.
        """
        if self.index is None:
            self._require_root()
            root = self.dataset_root
            log.info("dataset: %s%s", root.resolve(), " (synthetic)" if self.is_synthetic else "")
            index = index_dataset(root, class_name_map=self.class_name_map)
            # A folder only tested on (external validation) needs no train split and no masks; fit and validate do.
            tested_only = ("missing_train", "missing_segmentation") if stage in ("test", "predict") else ()
            index.raise_for_errors(allowed=tested_only)
            for problem in index.warnings[:20]:
                log.warning("dataset: %s", problem)
            if len(index.warnings) > 20:
                log.warning(
                    "dataset: %d more warnings (python -m brain_mtl check-data --root %s)",
                    len(index.warnings) - 20,
                    root,
                )
            if self.num_folds is None:
                self.index = carve_validation(index, self.val_fraction, self.seed, self.near_duplicate_distance)
            else:
                try:
                    self.index = carve_fold(index, self.num_folds, self.fold, self.seed, self.near_duplicate_distance)
                except ValueError as error:
                    raise DatasetError(str(error)) from error
                n_val = sum(r.split == "val" and r.task == "classification" for r in self.index.records)
                log.info(
                    "cross-validation: fold %d of %d (seed %d) validates on %d images",
                    self.fold,
                    self.num_folds,
                    self.seed,
                    n_val,
                )
        if self.cache_images and stage in (None, "fit", "validate"):
            if self.cache is None:
                self.cache = ImageCache(build_resize(self.image_size, self.keep_aspect))
            specs = (
                self._seg_specs("train") + self._cls_specs("train") + self._seg_specs("val") + self._cls_specs("val")
            )
            self.cache.fill(specs)

    # ------------------------------------------------------------------------------------------------------
    # Sample lists
    # ------------------------------------------------------------------------------------------------------
    def _require_index(self) -> DatasetIndex:
        if self.index is None:
            raise RuntimeError("call datamodule.setup() (the Trainer does) before asking for a dataloader")
        return self.index

    @staticmethod
    def _spec(record: ImageRecord, mask_path: Path | None = None, mask_known: bool = True) -> SampleSpec:
        return SampleSpec(record.path, record.label, mask_path, mask_known, record.digest)

    def _seg_specs(self, split: str) -> list[SampleSpec]:
        index = self._require_index()
        specs = [self._spec(r, r.mask_path) for r in index.segmentation(split)]
        if split == "train" and self.healthy_in_segmentation:
            specs += [self._spec(r) for r in index.classification(split) if r.label == NO_TUMOR]
        return specs

    def _cls_specs(self, split: str) -> list[SampleSpec]:
        return [self._spec(r) for r in self._require_index().classification(split)]

    def _evaluation_specs(self, split: str) -> list[SampleSpec]:
        index = self._require_index()
        pairs = Twins(index.records, "segmentation")  # byte-identical images share their mask, in any split
        specs = []
        for r in index.classification(split):
            pair = pairs.first(r)
            if r.label == NO_TUMOR:
                specs.append(self._spec(r, None, True))
            elif pair is not None:
                specs.append(self._spec(r, pair.mask_path, True))
            else:
                specs.append(self._spec(r, None, False))
        return specs

    def _check_split(self, split: str) -> None:
        index = self._require_index()
        if split not in index.splits:
            if split == "val":
                return
            raise DatasetError(
                f"{self.dataset_root}: no {split} split: {CLASSIFICATION_TASK}/{split} and "
                f"{SEGMENTATION_TASK}/{split} are missing or empty. Add them, or skip this stage."
            )

    # ------------------------------------------------------------------------------------------------------
    # Loaders
    # ------------------------------------------------------------------------------------------------------
    def _loader(self, dataset: Dataset, train: bool) -> DataLoader:
        workers = self.num_workers
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=train,
            # A last batch of one image breaks batch norm in training; keep it when it is the only batch.
            drop_last=train and len(dataset) > self.batch_size,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=self.pin_memory,
        )

    def _transform(self, split: str) -> A.Compose:
        return build_transforms(split, self.image_size, self.keep_aspect, self.augment)

    def _random(self, split: str) -> bool:
        return split == "train" and self.augment != "none"

    def _cache_for(self, split: str) -> ImageCache | None:
        return self.cache if split in ("train", "val") else None

    def segmentation_dataset(self, split: str) -> SegmentationDataset:
        """Segmentation samples of a split (training also holds no-tumour images when enabled)."""
        return SegmentationDataset(
            self._seg_specs(split), self._transform(split), self._cache_for(split), self._random(split)
        )

    def classification_dataset(self, split: str) -> ClassificationDataset:
        """Classification samples of a split (all classes)."""
        return ClassificationDataset(
            self._cls_specs(split), self._transform(split), self._cache_for(split), self._random(split)
        )

    def _dataloader_factory(self, split: str) -> CombinedLoader | DataLoader:
        if split == "train":
            self._check_split(split)
            seg = self._loader(self.segmentation_dataset(split), train=True)
            cls = self._loader(self.classification_dataset(split), train=True)
            return CombinedLoader({"seg": seg, "cls": cls}, mode=self.train_mode)
        return self.evaluation_dataloader(split)

    def train_dataloader(self) -> CombinedLoader:
        """``CombinedLoader({"seg": ..., "cls": ...})`` over the training split, shuffled and augmented."""
        return self._dataloader_factory("train")

    def val_dataloader(self) -> DataLoader | list:
        """Every validation image once, with its mask where known (:meth:`evaluation_dataloader`).

        An empty list when the dataset has no validation split.
        """
        if "val" not in self._require_index().splits:
            return []
        return self._dataloader_factory("val")

    def split_has_masks(self, split: str) -> bool:
        """Whether any tumour image of ``split`` has a known mask (False for a classification-only folder)."""
        index = self._require_index()
        key = (id(index), split)
        if key not in self._masks_known:
            self._masks_known.clear()  # one index at a time
            self._masks_known[key] = bool(index.segmentation(split)) or any(
                spec.mask_known and spec.label != NO_TUMOR for spec in self._evaluation_specs(split)
            )
        return self._masks_known[key]

    def test_dataloader(self) -> DataLoader:
        """Every image of ``test_split`` once, with its mask where known (:meth:`evaluation_dataloader`)."""
        return self._dataloader_factory(self.test_split)

    def predict_dataloader(self) -> DataLoader:
        """The test split's classification images (all classes), evaluation transforms."""
        self._check_split("test")
        return self._loader(self.classification_dataset("test"), train=False)

    def evaluation_dataloader(self, split: str = "test") -> DataLoader:
        """Every classification image of a split with its mask where known, for evaluation reports.

        Each sample has ``image``, ``mask`` (the ground-truth mask of the image's segmentation pair, matched by
        file name or content hash; zeros for no-tumour images and where no mask exists), ``has_mask`` (True when
        the mask is known: a pair exists or the image is no-tumour), ``label``, ``path`` and ``orig_size``.

        Args:
            split: ``"train"``, ``"val"`` or ``"test"``.
        """
        self._check_split(split)
        dataset = EvaluationDataset(self._evaluation_specs(split), self._transform("test"), self._cache_for(split))
        return self._loader(dataset, train=False)

    def state_dict(self) -> dict:
        """Nothing to restore: the split is a function of the folder, ``val_fraction`` and ``seed``."""
        return {}

    def teardown(self, stage: str | None = None) -> None:
        """Drop the image cache after fitting so test/predict do not hold it."""
        if stage == "fit":
            self.cache = None
