"""Data: index and check a BRISC-layout folder, datasets and transforms, the DataModule.

Main entry points: :class:`BrainTumorDataModule` (training), :func:`index_dataset` and :func:`summarize` (checking
a folder), :func:`read_image` / :func:`read_mask` (any file to arrays). One concept per module: ``layout`` (BRISC
folder and file names), ``records``, ``checks``, ``duplicates``, ``split``, ``index``, ``summary``, ``io``,
``transforms``, ``datasets``, ``datamodule``, ``preview``; the synthetic dataset (:mod:`brain_mtl.data.synthetic`:
:func:`generate_synthetic_dataset`, :func:`synthesize_slice`) is one more source of BRISC-layout folders. See
``docs/data.md``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from brain_mtl.data.datasets import (
    ClassificationDataset,
    EvaluationDataset,
    ImageCache,
    SampleSpec,
    SegmentationDataset,
)
from brain_mtl.data.duplicates import (
    duplicate_groups,
    file_digest,
    find_duplicates,
    group_by_digest,
)
from brain_mtl.data.errors import DatasetError
from brain_mtl.data.index import Twins, cross_split_duplicates, index_dataset
from brain_mtl.data.inspection import inspect_file
from brain_mtl.data.io import read_image, read_mask
from brain_mtl.data.layout import format_name, parse_name
from brain_mtl.data.records import DatasetIndex, FileCheck, FoundImage, ImageRecord, Problem
from brain_mtl.data.split import carve_validation, same_image_groups
from brain_mtl.data.summary import format_report, summarize
from brain_mtl.data.synthetic import generate_synthetic_dataset, synthesize_slice
from brain_mtl.data.transforms import IMAGENET_MEAN, IMAGENET_STD, build_transforms, denormalize

if TYPE_CHECKING:
    from brain_mtl.data.datamodule import BrainTumorDataModule, default_num_workers

_LIGHTNING = ("BrainTumorDataModule", "default_num_workers")
"""Names of :mod:`brain_mtl.data.datamodule`, the one module here that needs Lightning: imported on first use, so
that the file code (indexing, checks, duplicates; the report's leakage section) loads without Lightning."""

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "BrainTumorDataModule",
    "ClassificationDataset",
    "DatasetError",
    "DatasetIndex",
    "EvaluationDataset",
    "FileCheck",
    "FoundImage",
    "ImageCache",
    "ImageRecord",
    "Problem",
    "SampleSpec",
    "SegmentationDataset",
    "Twins",
    "build_transforms",
    "carve_validation",
    "cross_split_duplicates",
    "default_num_workers",
    "denormalize",
    "duplicate_groups",
    "file_digest",
    "find_duplicates",
    "format_name",
    "format_report",
    "generate_synthetic_dataset",
    "group_by_digest",
    "index_dataset",
    "inspect_file",
    "parse_name",
    "read_image",
    "read_mask",
    "same_image_groups",
    "summarize",
    "synthesize_slice",
]


def __getattr__(name: str) -> Any:
    if name in _LIGHTNING:
        return getattr(importlib.import_module("brain_mtl.data.datamodule"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
