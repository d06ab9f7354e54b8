"""Checks of a dataset folder's shape: the root, its split folders, image files, masks against labels, splits.

Each function appends :class:`~brain_mtl.data.records.Problem` records to a list, so that
:func:`~brain_mtl.data.index.index_dataset` collects every problem of a folder in one pass. Reading one file is
:mod:`brain_mtl.data.inspection`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from brain_mtl.classes import CLASS_NAMES, NO_TUMOR
from brain_mtl.data.io import IMAGE_EXTENSIONS
from brain_mtl.data.layout import (
    CLASSIFICATION_TASK,
    IMAGES_DIR,
    MASKS_DIR,
    SEGMENTATION_TASK,
    SPLITS,
    TASKS,
    find_nested_root,
    is_image,
    is_junk,
)
from brain_mtl.data.records import FileCheck, ImageRecord, Problem

__all__ = [
    "FULL_MASK_FRACTION",
    "check_masks",
    "check_pair_sizes",
    "check_root",
    "check_splits",
    "image_files",
    "split_dirs",
]

FULL_MASK_FRACTION = 0.9
"""A mask with more tumour pixels than this share of the image is reported (probably inverted, or not a mask)."""


def check_root(root: Path, problems: list[Problem]) -> bool:
    """Check that ``root`` is a dataset folder with both task folders (suggesting a nested one if not).

    Args:
        root: the dataset root.
        problems: where the problems found are appended.

    Returns:
        False when nothing under ``root`` can be indexed.
    """
    layout = (
        f"{CLASSIFICATION_TASK}/{{train,test}}/<class>/*.jpg and "
        f"{SEGMENTATION_TASK}/{{train,test}}/{{{IMAGES_DIR},{MASKS_DIR}}}/"
    )
    if not root.exists():
        problems.append(
            Problem(
                "bad_root",
                root,
                "the dataset root does not exist.",
                f"point data.root (--root) at the folder that holds {CLASSIFICATION_TASK}/ and "
                f"{SEGMENTATION_TASK}/, or generate one with `python -m brain_mtl synth --root DIR`.",
            )
        )
        return False
    if not root.is_dir():
        problems.append(
            Problem(
                "bad_root",
                root,
                "the dataset root is a file, not a folder.",
                f"point data.root at the folder that holds {layout}",
            )
        )
        return False
    if not any((root / t).is_dir() for t in TASKS):
        nested = find_nested_root(root)
        empty = not any(True for _ in root.iterdir())
        message = (
            "the dataset root is empty."
            if empty
            else f"the dataset root holds neither {CLASSIFICATION_TASK}/ nor {SEGMENTATION_TASK}/."
        )
        fix = (
            f"did you mean {nested}? Point data.root there."
            if nested
            else f"point data.root at a folder laid out as {layout}"
        )
        problems.append(Problem("bad_root", root, message, fix))
        return False
    for task in TASKS:
        if not (root / task).is_dir():
            classification_only = task == SEGMENTATION_TASK
            problems.append(
                Problem(
                    "missing_segmentation" if classification_only else "bad_root",
                    root / task,
                    f"the {task}/ folder is missing: the joint model "
                    "needs both classification images and segmentation pairs"
                    + (" to train (a classification-only folder can be tested on)." if classification_only else "."),
                    "restore the folder (BRISC ships both) next to the other one.",
                )
            )
    return True


def split_dirs(task_dir: Path, problems: list[Problem]) -> list[tuple[str, Path]]:
    """The split folders of a task folder; other entries are reported, a missing ``train`` is an error.

    Args:
        task_dir: ``<root>/classification_task`` or ``<root>/segmentation_task`` (may be missing).
        problems: where the problems found are appended.

    Returns:
        ``(split name, folder)`` pairs, sorted by folder name.
    """
    found = []
    for child in sorted(task_dir.iterdir()) if task_dir.is_dir() else []:
        if not child.is_dir():
            if not is_junk(child):
                problems.append(
                    Problem(
                        "unexpected_file",
                        child,
                        "a file directly in the task folder is ignored.",
                        "move it into a split folder (train/val/test) or remove it.",
                        "warning",
                    )
                )
            continue
        if child.name in SPLITS:
            found.append((child.name, child))
        elif not is_junk(child):
            problems.append(
                Problem(
                    "unknown_split",
                    child,
                    f"folder {child.name!r} is not a split ({', '.join(SPLITS)}) and is ignored.",
                    "rename it to train, val or test if it holds data.",
                    "warning",
                )
            )
    if task_dir.is_dir() and "train" not in {name for name, _ in found}:
        problems.append(
            Problem(
                "missing_train",
                task_dir / "train",
                "the train split folder is missing.",
                f"create {task_dir / 'train'} with the training data (a folder to test on only, e.g. for "
                "external validation, needs none: `test` reads its test split).",
            )
        )
    return found


def image_files(folder: Path, problems: list[Problem]) -> list[Path]:
    """The image files directly in ``folder``; sub-folders and other files are reported as warnings.

    Args:
        folder: a class folder, or an ``images``/``masks`` folder.
        problems: where the problems found are appended.
    """
    files = []
    for child in sorted(folder.iterdir()):
        if is_junk(child):
            continue
        if child.is_dir():
            problems.append(
                Problem(
                    "unexpected_folder",
                    child,
                    "sub-folder ignored (images are expected directly in this folder).",
                    "move its images up one level or remove it.",
                    "warning",
                )
            )
        elif is_image(child):
            files.append(child)
        else:
            problems.append(
                Problem(
                    "not_an_image",
                    child,
                    f"not an image file ({child.suffix or 'no extension'}), ignored.",
                    f"remove it; images end in {sorted(IMAGE_EXTENSIONS)}.",
                    "warning",
                )
            )
    return files


def check_masks(records: Sequence[ImageRecord], problems: list[Problem], decode: bool) -> None:
    """Check each mask's tumour area against its image's label (empty, nearly full, tumour on no_tumor).

    Args:
        records: the indexed images (segmentation ones with their mask area).
        problems: where the problems found are appended.
        decode: whether the files were decoded (without decoding there are no mask areas to check).
    """
    if not decode:
        return
    for r in records:
        if r.task != "segmentation" or r.mask_area is None or r.label < 0:
            continue
        if r.mask_area == 0 and r.label != NO_TUMOR:
            problems.append(
                Problem(
                    "empty_mask",
                    r.mask_path,
                    f"empty mask: no pixel above 127 although its image {r.path.name} is {CLASS_NAMES[r.label]}.",
                    "masks must mark the tumour in "
                    "white (255); a mask saved as 0/1 reads as empty: multiply it by 255.",
                )
            )
        elif r.mask_area > FULL_MASK_FRACTION:
            problems.append(
                Problem(
                    "full_mask",
                    r.mask_path,
                    f"nearly full mask: {r.mask_area:.1%} of the pixels are tumour (above 127) for its image "
                    f"{r.path.name} ({CLASS_NAMES[r.label]}); tumours cover at most a few tens of percent of a "
                    "slice (BRISC: 17% at most). Probably an inverted mask (tumour black on white) or the wrong file.",
                    "check it: masks mark the tumour in white (255) on black; invert an inverted one (255 - value).",
                    "warning",
                )
            )
        if r.mask_area > 0 and r.label == NO_TUMOR:
            problems.append(
                Problem(
                    "label_conflict",
                    r.mask_path,
                    f"conflicting labels: the mask marks a tumour but its image {r.path.name} is labelled no_tumor.",
                    "fix the label or the mask.",
                )
            )


def check_pair_sizes(image: ImageRecord, mask: FileCheck, problems: list[Problem]) -> None:
    """A mask must have its image's size.

    Args:
        image: a decoded segmentation image (with its ``mask_path``).
        mask: the check of its mask.
        problems: where the problem found is appended.
    """
    if (image.height, image.width) != (mask.height, mask.width):
        problems.append(
            Problem(
                "size_mismatch",
                image.mask_path,
                f"image/mask size mismatch: the mask is {mask.width}x{mask.height} but its image {image.path.name} "
                f"is {image.width}x{image.height} (width x height).",
                "re-export the mask at the image's size.",
            )
        )


def check_splits(root: Path, records: Sequence[ImageRecord], problems: list[Problem]) -> None:
    """Train must hold images in each task; ``val`` and ``test`` must exist in both tasks or in neither.

    Args:
        root: the dataset root.
        records: every record of the index.
        problems: where the problems found are appended.
    """
    present = {(r.task, r.split) for r in records}
    for task, folder, message, fix in (
        (
            "classification",
            CLASSIFICATION_TASK,
            "no classification images in the train split.",
            "put images in <class folder>/ sub-folders of it.",
        ),
        (
            "segmentation",
            SEGMENTATION_TASK,
            "no segmentation pairs in the train split.",
            "put images in images/ and their masks in masks/.",
        ),
    ):
        if (task, "train") not in present and (root / folder / "train").is_dir():
            problems.append(Problem("empty", root / folder / "train", message, fix))
    if not all((root / t).is_dir() for t in TASKS):
        return
    for split in ("val", "test"):
        has_cls = ("classification", split) in present
        has_seg = ("segmentation", split) in present
        if has_cls != has_seg:
            missing = SEGMENTATION_TASK if has_cls else CLASSIFICATION_TASK
            problems.append(
                Problem(
                    "missing_split",
                    root / missing / split,
                    f"the {split} split exists in one task only: {missing}/{split} is missing or empty.",
                    f"add {missing}/{split}, or remove the other {split} folder.",
                )
            )
