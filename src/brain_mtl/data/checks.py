"""Checks of a dataset folder: one file's content, the root's shape, masks against labels, splits present.

:func:`inspect_file` reads one file (content hash, format, truncation, decodability, size, mask area) and never
raises; :func:`inspect_files` does it for many files on threads. The other functions append
:class:`~brain_mtl.data.records.Problem` records to a list, so that :func:`~brain_mtl.data.index.index_dataset`
collects every problem of a folder in one pass.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from brain_mtl.classes import CLASS_NAMES, NO_TUMOR
from brain_mtl.data.duplicates import file_digest
from brain_mtl.data.errors import DatasetError
from brain_mtl.data.io import (
    EXTENSION_FORMATS,
    FORMAT_EXTENSIONS,
    FORMAT_NAMES,
    IMAGE_EXTENSIONS,
    capture_native_stderr,
    decode_checked,
    decode_unchanged,
    describe_start,
    is_truncated,
    mask_from_array,
    release_captured,
    sniff_format,
)
from brain_mtl.data.layout import (
    CLASSIFICATION_TASK,
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
    "inspect_file",
    "inspect_files",
    "report_file",
    "split_dirs",
]

FULL_MASK_FRACTION = 0.9
"""A mask with more tumour pixels than this share of the image is reported (probably inverted, or not a mask)."""

_REPLACE_FIX = "replace it with a good copy (copy or download it again, or re-export it), or remove it."
_MESSAGE_LIMIT = 300
# OpenCV's log lines carry a timestamp ("[ WARN:0@0.022] ..."): dropped when comparing two captures of one message.
_LOG_STAMP = re.compile(r"^\[\s*(\w+):[^\]]*\]\s*")


def _one_line(messages: str) -> str:
    text = "; ".join(line.strip() for line in messages.splitlines() if line.strip())
    return text if len(text) <= _MESSAGE_LIMIT else text[: _MESSAGE_LIMIT - 3] + "..."


def inspect_file(path: Path, is_mask: bool = False, decode: bool = True, strict: bool = True) -> FileCheck:
    """Read one file: content hash, format, truncation, decodability, size, and (masks) the tumour fraction.

    The file is judged by its content, not its name: bytes with no image signature are ``not_an_image``; a JPEG
    named ``.png`` loads (OpenCV reads content) and gets a ``wrong_extension`` note; bytes after the end marker
    are accepted. With ``strict``, the decoder's warnings on stderr are captured for this file
    (:func:`brain_mtl.data.io.decode_checked`): a JPEG that decodes with libjpeg's "Corrupt JPEG data" warning is
    ``corrupt`` (OpenCV returns it with the undecodable part flat grey).

    Args:
        path: the file.
        is_mask: also compute the mask's tumour fraction.
        decode: decode the pixels (False: hash, format and truncation only).
        strict: capture the decoder's warnings. Only False inside a capture that the caller holds (decoding
            threads, see :func:`inspect_files`), where a capture per file would wait forever on the capture lock.

    Never raises: a problem is returned in ``error_kind``/``error``/``fix``, warnings in ``notes``.
    """
    try:
        data = path.read_bytes()
    except OSError as error:
        return FileCheck(
            error_kind="unreadable",
            error=f"unreadable: the file cannot be opened ({error.strerror or error}).",
            fix="check its permissions, or replace or remove it.",
        )
    digest = file_digest(data)
    if not data:
        return FileCheck(
            digest=digest, error_kind="unreadable", error="unreadable: the file is empty (0 bytes).", fix=_REPLACE_FIX
        )
    fmt = sniff_format(data)
    if fmt is None:
        return FileCheck(
            digest=digest,
            error_kind="not_an_image",
            error=f"not an image: the content is not JPEG, PNG or any image format although the name ends in "
            f"{path.suffix or '(no extension)'} ({describe_start(data)}).",
            fix="replace it with the real image (a JPEG starts with the bytes ff d8 ff, a PNG with 89 50 4e 47), "
            "or remove it.",
        )
    name = FORMAT_NAMES[fmt]
    notes: list[tuple[str, str, str]] = []
    named = EXTENSION_FORMATS.get(path.suffix.lower())
    if named is not None and named != fmt:
        notes.append(
            (
                "wrong_extension",
                f"wrong extension: it is a {name}, named {path.suffix}. It loads (files are decoded by their "
                "content, not their name), but other tools may refuse it.",
                f"rename it to {path.stem}{FORMAT_EXTENSIONS[fmt]}.",
            )
        )
    if is_truncated(data):
        return FileCheck(
            digest=digest,
            format=fmt,
            error_kind="truncated",
            error=f"truncated: the {name} data ends before its end marker (an interrupted copy or download; "
            "decoded, the missing part would come out grey).",
            fix="copy or download it again, or remove it.",
            notes=tuple(notes),
        )
    if not decode:
        return FileCheck(digest=digest, format=fmt, notes=tuple(notes))
    if strict:
        array, messages = decode_checked(data)
    else:
        array, messages = _decode_or_none(data, path), ""
    if array is None:
        said = f" (the decoder said: {_one_line(messages)!r})" if messages else ""
        return FileCheck(
            digest=digest,
            format=fmt,
            error_kind="corrupt",
            error=f"corrupt: the {name} data cannot be decoded{said}.",
            fix=_REPLACE_FIX,
            notes=tuple(notes),
            decoder_messages=messages,
        )
    if messages and fmt == "jpeg":
        return FileCheck(
            digest=digest,
            format=fmt,
            error_kind="corrupt",
            error=f"corrupt: the JPEG decoder reported {_one_line(messages)!r}: part of the image is missing "
            "(decoded as flat grey) or garbled.",
            fix=_REPLACE_FIX,
            notes=tuple(notes),
            decoder_messages=messages,
        )
    if messages:
        notes.append(
            (
                "decoder_warning",
                f"the {name} decoder warned: {_one_line(messages)!r}; the image was decoded.",
                "check that it looks right; re-save it (e.g. with OpenCV or Pillow) if it does not.",
            )
        )
    channels = 1 if array.ndim == 2 else array.shape[2]
    mask_area = float(mask_from_array(array).mean()) if is_mask else None
    return FileCheck(
        digest=digest,
        height=array.shape[0],
        width=array.shape[1],
        channels=channels,
        dtype=str(array.dtype),
        mask_area=mask_area,
        format=fmt,
        notes=tuple(notes),
        decoder_messages=messages,
    )


def _decode_or_none(data: bytes, path: Path) -> np.ndarray | None:
    try:
        return decode_unchanged(data, path)
    except DatasetError:
        return None


def inspect_files(jobs: Sequence[tuple[Path, bool]], decode: bool, threads: int | None) -> list[FileCheck]:
    """Inspect many files (see :func:`inspect_file`), on threads when there are enough of them.

    Args:
        jobs: ``(path, is_mask)`` per file.
        decode: decode the pixels (False: hash, format and truncation only).
        threads: reader threads (None: up to 8, from the CPU count).

    Returns:
        One :class:`~brain_mtl.data.records.FileCheck` per job, in order.
    """
    if threads is None:
        threads = min(8, os.cpu_count() or 1)
    if threads <= 1 or len(jobs) < 8:
        return [inspect_file(p, m, decode) for p, m in jobs]

    # OpenCV decoding and hashing release the GIL: threads use every core without pickling arrays around.
    def run() -> list[FileCheck]:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            return list(pool.map(lambda job: inspect_file(job[0], job[1], decode, strict=False), jobs, chunksize=16))

    if not decode:
        return run()
    # libjpeg prints "Corrupt JPEG data: ..." to stderr without a file name. Stderr is one per process, so it is
    # captured once around all the decoding threads; in the rare case that anything was printed, the files are
    # decoded again one by one, each with its own capture, to tell which file said what.
    with capture_native_stderr() as captured:
        checks = run()
    if not captured.text.strip():
        return checks
    checks = [inspect_file(p, m, decode, strict=True) for p, m in jobs]
    attributed = {_LOG_STAMP.sub("", line).strip() for c in checks for line in c.decoder_messages.splitlines()}
    unattributed = [
        line
        for line in captured.text.splitlines(keepends=True)
        if line.strip() and _LOG_STAMP.sub("", line).strip() not in attributed
    ]
    release_captured("".join(unattributed))  # other code's output, printed meanwhile: give it back
    return checks


def check_root(root: Path, problems: list[Problem]) -> bool:
    """Check that ``root`` is a dataset folder with both task folders (suggesting a nested one if not).

    Args:
        root: the dataset root.
        problems: where the problems found are appended.

    Returns:
        False when nothing under ``root`` can be indexed.
    """
    layout = "classification_task/{train,test}/<class>/*.jpg and segmentation_task/{train,test}/{images,masks}/"
    if not root.exists():
        problems.append(
            Problem(
                "bad_root",
                root,
                "the dataset root does not exist.",
                "point data.root (--root) at the folder that holds classification_task/ and "
                "segmentation_task/, or generate one with `python -m brain_mtl synth --root DIR`.",
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
            else "the dataset root holds neither classification_task/ nor segmentation_task/."
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
            problems.append(
                Problem(
                    "bad_root",
                    root / task,
                    f"the {task}/ folder is missing: the joint model "
                    "needs both classification images and segmentation pairs.",
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
                "bad_root",
                task_dir / "train",
                "the train split folder is missing.",
                f"create {task_dir / 'train'} with the training data.",
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


def report_file(check: FileCheck, path: Path, also_remove: str, problems: list[Problem]) -> bool:
    """Turn one file's check into problems (its error, its warnings).

    Args:
        check: from :func:`inspect_file`.
        path: the file.
        also_remove: appended to a fix that ends in "or remove it" (e.g. " and its image" for a mask).
        problems: where the problems found are appended.

    Returns:
        True when the file is unusable.
    """
    for kind, message, fix in check.notes:
        problems.append(Problem(kind, path, message, fix, "warning"))
    if not check.error:
        return False
    fix = check.fix or _REPLACE_FIX
    if also_remove and fix.endswith("or remove it."):
        fix = fix[: -len(".")] + also_remove + "."
    problems.append(Problem(check.error_kind or "unreadable", path, check.error, fix))
    return True


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
