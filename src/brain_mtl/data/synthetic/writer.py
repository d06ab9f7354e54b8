"""The synthetic dataset writer: BRISC 2025 folders, names, manifest and marker, filled with drawn slices.

The project can never download BRISC (it is on Kaggle), so tests, the quickstart and the documentation run on
data this module draws. It reproduces the real data's quirks that the loading code must survive (see
``docs/data.md``): several image sizes including non-square ones, JPEGs stored as 8-bit gray and as 3-channel
RGB, masks whose values lie in 0-7 / 248-255 instead of exactly 0/255, no-tumour images only in
``classification_task``, every segmentation image byte-identical to a classification image, BRISC file names
with three views, a ``manifest.csv``, a ``synthetic.json`` marker (:func:`is_synthetic_dataset` recognises the
folder afterwards), and a few byte-identical duplicate images inside train and across
train/test.

The slices are drawn by :func:`brain_mtl.data.synthetic.phantom.synthesize_slice`; folder and file names come from
:mod:`brain_mtl.data.layout`, so the index reads back exactly what is written here. Each image has its own
random generator seeded from ``(seed, split, index)``: the output is the same for a seed on every machine.
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from brain_mtl.classes import CLASS_NAMES, NO_TUMOR
from brain_mtl.data.layout import (
    CLASS_CODES,
    MASK_EXTENSION,
    SEQUENCE,
    VIEWS,
    classification_split_dir,
    dataset_exists,
    format_name,
    segmentation_dirs,
)
from brain_mtl.data.synthetic.phantom import noisy_mask_png, synthesize_slice

__all__ = ["SYNTHETIC_MARKER", "SynthesisReport", "generate_synthetic_dataset", "is_synthetic_dataset"]

BRISC_TRAIN_PROPORTIONS: tuple[float, ...] = (1147 / 5000, 1329 / 5000, 1457 / 5000, 1067 / 5000)
"""Class proportions of BRISC's training split (glioma, meningioma, pituitary, no tumour)."""

BRISC_TEST_PROPORTIONS: tuple[float, ...] = (254 / 1000, 306 / 1000, 300 / 1000, 140 / 1000)
"""Class proportions of BRISC's test split."""

VIEW_PROPORTIONS: tuple[float, ...] = (0.4, 0.3, 0.3)

# (height, width, weight). Mostly 256x256 like the quickstart's working size; real BRISC is mostly 512x512
# (4,881 of 6,000) with sides from 174 to 1,427 px. About 11% non-square, as in BRISC (659 of 6,000).
IMAGE_SIZES: tuple[tuple[int, int, float], ...] = (
    (256, 256, 0.70),
    (224, 224, 0.06),
    (288, 288, 0.06),
    (320, 320, 0.04),
    (192, 192, 0.03),
    (256, 320, 0.04),
    (224, 288, 0.03),
    (320, 256, 0.02),
    (240, 200, 0.02),
)

_SPLIT_IDS = {"train": 1, "test": 2, "val": 3}


def _class_counts(total: int, proportions: Sequence[float]) -> list[int]:
    """Largest-remainder rounding of ``total * proportions`` (sums to ``total``)."""
    raw = [total * p for p in proportions]
    counts = [math.floor(r) for r in raw]
    order = sorted(range(len(raw)), key=lambda i: raw[i] - counts[i], reverse=True)
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


@dataclass(frozen=True)
class _Job:
    seed: int
    split: str
    index: int
    label: int


def _render(job: _Job) -> tuple[bytes, bytes | None, dict]:
    """Draw one image and encode it (and its mask); runs in worker processes when asked for."""
    rng = np.random.default_rng(np.random.SeedSequence([job.seed, _SPLIT_IDS[job.split], job.index]))
    weights = np.array([w for _, _, w in IMAGE_SIZES])
    height, width, _ = IMAGE_SIZES[int(rng.choice(len(IMAGE_SIZES), p=weights / weights.sum()))]
    view = VIEWS[int(rng.choice(len(VIEWS), p=VIEW_PROPORTIONS))]
    image, mask = synthesize_slice(rng, job.label, view, height, width)
    stored_rgb = rng.random() < 0.4  # BRISC stores some JPEGs as 3-channel RGB that is effectively gray
    pixels = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if stored_rgb else image
    ok, encoded = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(88, 96))])
    assert ok
    mask_png = noisy_mask_png(rng, mask) if job.label != NO_TUMOR else None
    info = {
        "view": view,
        "height": height,
        "width": width,
        "channels": 3 if stored_rgb else 1,
        "tumor_area_fraction": float(mask.mean()),
    }
    return encoded.tobytes(), mask_png, info


SYNTHETIC_MARKER = "synthetic.json"
"""File the generator writes at the dataset root, last: it says the folder is synthetic and how it was drawn."""

# Written into the marker and recognised by is_synthetic_dataset: a format tag (the generator's first module name),
# kept when the code moved so that folders generated before still read as synthetic.
_GENERATOR = "brain_mtl.synthetic"  # the marker of every synthetic dataset written (kept across the move)
_MANIFEST_FIELDS = (
    "path",
    "mask_path",
    "task",
    "split",
    "class",
    "code",
    "view",
    "sequence",
    "height",
    "width",
    "stored_channels",
    "tumor_area_fraction",
    "duplicate_of_train_index",
)


def is_synthetic_dataset(root: str | Path) -> bool:
    """Tell whether ``root`` holds a dataset written by :func:`generate_synthetic_dataset`.

    True when the folder has the generator's ``synthetic.json`` marker, or (folders generated before the marker
    existed) a ``manifest.csv`` with exactly the generator's columns. BRISC's own manifest has other columns.
    """
    root = Path(root)
    try:
        marker = json.loads((root / SYNTHETIC_MARKER).read_text(encoding="utf-8"))
        if isinstance(marker, dict) and marker.get("generator") == _GENERATOR:
            return True
    except (OSError, ValueError):
        pass
    try:
        with open(root / "manifest.csv", newline="", encoding="utf-8") as handle:
            header = next(csv.reader(handle), [])
    except (OSError, UnicodeDecodeError):
        return False
    return tuple(header) == _MANIFEST_FIELDS


@dataclass(frozen=True)
class SynthesisReport:
    """What :func:`generate_synthetic_dataset` wrote.

    Attributes:
        root: the dataset root.
        counts: split -> classification images per class (class-index order).
        segmentation_pairs: split -> segmentation pairs written.
        duplicates: ``"within_train"`` / ``"train_test"`` -> byte-identical copies written.
        seconds: time taken.
    """

    root: Path
    counts: dict[str, list[int]]
    segmentation_pairs: dict[str, int]
    duplicates: dict[str, int]
    seconds: float


def generate_synthetic_dataset(
    root: str | Path,
    n_train: int = 500,
    n_test: int = 100,
    seed: int = 42,
    duplicates: bool = True,
    workers: int = 0,
) -> SynthesisReport:
    """Write a synthetic dataset in the BRISC 2025 layout under ``root``.

    Args:
        root: output folder; must not already hold ``classification_task`` or ``segmentation_task``.
        n_train: classification images in ``train`` (class proportions as in BRISC's train split).
        n_test: classification images in ``test`` (proportions as in BRISC's test split).
        seed: the same seed writes byte-identical files.
        duplicates: copy a few images byte-for-byte under other names, inside train (about 0.6%) and from train
            into test (about 2% of test), as BRISC has (46 duplicate groups, 7 spanning train and test).
        workers: processes to draw images with (0: in this process). The output does not depend on it.

    Returns:
        A :class:`SynthesisReport` of what was written.

    Raises:
        FileExistsError: ``root`` already holds a dataset.
    """
    start = time.perf_counter()
    root = Path(root)
    if dataset_exists(root):
        raise FileExistsError(
            f"{root} already holds a dataset (classification_task/ or segmentation_task/); "
            "choose an empty folder or delete it first."
        )
    split_rng = np.random.default_rng(np.random.SeedSequence([seed, 0]))
    jobs: dict[str, list[_Job]] = {}
    copies: dict[str, list[tuple[int, int]]] = {"train": [], "test": []}  # (index, source train index)
    for split, total, proportions in (
        ("train", n_train, BRISC_TRAIN_PROPORTIONS),
        ("test", n_test, BRISC_TEST_PROPORTIONS),
    ):
        labels = np.repeat(np.arange(len(CLASS_NAMES)), _class_counts(total, proportions))
        split_rng.shuffle(labels)
        jobs[split] = [_Job(seed, split, i + 1, int(label)) for i, label in enumerate(labels)]
    if duplicates:
        n_within = round(0.006 * n_train) if n_train >= 50 else 0
        n_across = round(0.02 * n_test) if n_test >= 25 and n_train >= 50 else 0
        # Duplicates are the last images of a split, copies of earlier train images of the same class.
        for split, count in (("train", n_within), ("test", n_across)):
            for job in jobs[split][len(jobs[split]) - count :]:
                limit = len(jobs["train"]) - n_within
                sources = [j.index for j in jobs["train"][:limit] if j.label == job.label]
                if sources:
                    copies[split].append((job.index, int(split_rng.choice(sources))))
    copy_of = {(split, index): source for split in copies for index, source in copies[split]}

    for split in ("train", "test"):
        for name in CLASS_NAMES:
            (classification_split_dir(root, split) / name).mkdir(parents=True, exist_ok=True)
        for folder in segmentation_dirs(root, split):
            folder.mkdir(parents=True, exist_ok=True)

    to_draw = [job for split in ("train", "test") for job in jobs[split] if (split, job.index) not in copy_of]
    if workers and workers > 0:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            rendered = list(pool.map(_render, to_draw, chunksize=8))
    else:
        rendered = [_render(job) for job in to_draw]
    outputs = {(job.split, job.index): out for job, out in zip(to_draw, rendered, strict=True)}

    rows = []
    seg_pairs = {"train": 0, "test": 0}
    counts = {split: [0] * len(CLASS_NAMES) for split in ("train", "test")}
    for split in ("train", "test"):
        for job in jobs[split]:
            source = copy_of.get((split, job.index))
            image_bytes, mask_bytes, info = outputs[("train", source) if source else (split, job.index)]
            name = format_name(split, job.index, job.label, info["view"])
            cls_path = classification_split_dir(root, split) / CLASS_NAMES[job.label] / name
            cls_path.write_bytes(image_bytes)
            counts[split][job.label] += 1
            rows.append(_manifest_row(root, cls_path, split, "classification", job.label, info, source))
            if mask_bytes is not None:
                image_dir, mask_dir = segmentation_dirs(root, split)
                seg_image = image_dir / name
                seg_mask = mask_dir / (seg_image.stem + MASK_EXTENSION)
                seg_image.write_bytes(image_bytes)
                seg_mask.write_bytes(mask_bytes)
                seg_pairs[split] += 1
                rows.append(
                    _manifest_row(root, seg_image, split, "segmentation", job.label, info, source, mask=seg_mask)
                )
    with open(root / "manifest.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(_MANIFEST_FIELDS))
        writer.writeheader()
        writer.writerows(rows)
    marker = {
        "generator": _GENERATOR,
        "note": "synthetic images drawn by brain_mtl, not real MRI scans",
        "seed": seed,
        "n_train": n_train,
        "n_test": n_test,
        "duplicates": duplicates,
    }
    (root / SYNTHETIC_MARKER).write_text(json.dumps(marker, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return SynthesisReport(
        root=root,
        counts=counts,
        segmentation_pairs=seg_pairs,
        duplicates={"within_train": len(copies["train"]), "train_test": len(copies["test"])},
        seconds=time.perf_counter() - start,
    )


def _manifest_row(
    root: Path, path: Path, split: str, task: str, label: int, info: dict, source: int | None, mask: Path | None = None
) -> dict:
    return {
        "path": path.relative_to(root).as_posix(),
        "mask_path": mask.relative_to(root).as_posix() if mask else "",
        "task": task,
        "split": split,
        "class": CLASS_NAMES[label],
        "code": CLASS_CODES[label],
        "view": info["view"],
        "sequence": SEQUENCE,
        "height": info["height"],
        "width": info["width"],
        "stored_channels": info["channels"],
        "tumor_area_fraction": f"{info['tumor_area_fraction']:.5f}",
        "duplicate_of_train_index": source or "",
    }
