"""Data: index and check a BRISC-layout folder, datasets and transforms, the DataModule, synthetic data.

Main entry points: :class:`BrainTumorDataModule` (training), :func:`index_dataset` and
:func:`~brain_mtl.data.report.summarize` (checking a folder), :func:`read_image` / :func:`read_mask` (any file to
arrays), :func:`generate_synthetic_dataset` (a BRISC-shaped synthetic set). See ``docs/data.md``.
"""

from brain_mtl.data.datamodule import BrainTumorDataModule, default_num_workers
from brain_mtl.data.datasets import (
    ClassificationDataset,
    EvaluationDataset,
    ImageCache,
    SampleSpec,
    SegmentationDataset,
)
from brain_mtl.data.errors import DatasetError
from brain_mtl.data.index import (
    DatasetIndex,
    ImageRecord,
    Problem,
    carve_validation,
    cross_split_duplicates,
    duplicate_groups,
    find_duplicates,
    index_dataset,
)
from brain_mtl.data.io import read_image, read_mask
from brain_mtl.data.report import format_report, summarize
from brain_mtl.data.synthetic import generate_synthetic_dataset, synthesize_slice
from brain_mtl.data.transforms import IMAGENET_MEAN, IMAGENET_STD, build_transforms, denormalize

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "BrainTumorDataModule",
    "ClassificationDataset",
    "DatasetError",
    "DatasetIndex",
    "EvaluationDataset",
    "ImageCache",
    "ImageRecord",
    "Problem",
    "SampleSpec",
    "SegmentationDataset",
    "build_transforms",
    "carve_validation",
    "cross_split_duplicates",
    "default_num_workers",
    "denormalize",
    "duplicate_groups",
    "find_duplicates",
    "format_report",
    "generate_synthetic_dataset",
    "index_dataset",
    "read_image",
    "read_mask",
    "summarize",
    "synthesize_slice",
]
