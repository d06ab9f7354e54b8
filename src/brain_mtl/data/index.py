"""Find the samples of a dataset folder in the BRISC layout, check every file, and carve a validation split.

Layout (see ``docs/data.md``)::

    <root>/classification_task/{train,test[,val]}/<class folder>/*.jpg
    <root>/segmentation_task/{train,test[,val]}/images/*.jpg
    <root>/segmentation_task/{train,test[,val]}/masks/*.png      (same basename as the image)

:func:`index_dataset` lists every image, reads its label from its folder and from the class code in its file
name (through one class table, :func:`brain_mtl.classes.class_index`), reads every file once (content hash, size,
truncation, mask area) and collects *every* problem instead of stopping at the first one.
:meth:`DatasetIndex.raise_for_errors` turns them into one :class:`~brain_mtl.data.errors.DatasetError`.
:func:`carve_validation` moves a stratified, seeded fraction of ``train`` to ``val`` without ever splitting one
image (same name or same bytes, in either task) between the two.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np

from brain_mtl.classes import CLASS_NAMES, DEFAULT_NAME_MAP, NO_TUMOR, class_index
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

SPLITS: tuple[str, ...] = ("train", "val", "test")
"""Split folder names that are indexed (``val`` is optional)."""

TASKS: tuple[str, ...] = ("classification_task", "segmentation_task")

_IGNORED_FILES = {"thumbs.db", "desktop.ini"}

# brisc2025_train_00010_gl_ax_t1.jpg ; Tr-gl_0010.jpg (the Kaggle "Brain Tumor MRI Dataset" convention).
_NAME_PATTERNS = (
    re.compile(r"^[A-Za-z0-9]+_[A-Za-z]+_\d+_(?P<code>[A-Za-z]+)_(?P<view>[A-Za-z]+)(?:_[A-Za-z0-9]+)*$"),
    re.compile(r"^(?:Tr|Te|Va)-(?P<code>[A-Za-z]+)_\d+$", re.IGNORECASE),
)

Severity = Literal["error", "warning"]

FULL_MASK_FRACTION = 0.9
"""A mask with more tumour pixels than this share of the image is reported (probably inverted, or not a mask)."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset folder.

    Attributes:
        kind: short machine-readable name, e.g. ``"missing_mask"``, ``"unknown_class"``.
        path: the file or folder concerned (None when the problem concerns no single path).
        message: what is wrong.
        fix: what the user should do about it.
        severity: ``"error"`` stops training; ``"warning"`` is only reported.
    """

    kind: str
    path: Path | None
    message: str
    fix: str
    severity: Severity = "error"

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path is not None else ""
        return f"{where}{self.message} Fix: {self.fix}"


@dataclass(frozen=True)
class FileCheck:
    """What reading one file found.

    ``error_kind`` names the cause when the file is unusable: ``"unreadable"`` (cannot be opened, or empty),
    ``"not_an_image"`` (the content has no image signature, whatever its name), ``"truncated"`` (the data ends
    before its end marker) or ``"corrupt"`` (the decoder fails, or a JPEG decodes with libjpeg's "Corrupt JPEG
    data" warning: part of it comes out grey). ``error`` says it in words and ``fix`` what to do. ``notes`` are
    warnings about a usable file, ``(kind, message, fix)``: ``"wrong_extension"`` (e.g. a JPEG named ``.png``;
    it loads, as files are decoded by content) and ``"decoder_warning"`` (a non-JPEG decoder printed a warning).
    """

    digest: str | None = None
    height: int = 0
    width: int = 0
    channels: int = 0
    dtype: str = ""
    mask_area: float | None = None  # tumour fraction of a mask file, after thresholding
    error_kind: str | None = None  # "unreadable", "not_an_image", "truncated" or "corrupt"
    error: str | None = None
    format: str | None = None  # what the content is (io.sniff_format): "jpeg", "png", ...; None: not an image
    fix: str | None = None
    notes: tuple[tuple[str, str, str], ...] = ()
    decoder_messages: str = ""  # what the decoder printed to stderr while decoding this file (strict decoding)


@dataclass(frozen=True)
class ImageRecord:
    """One image of the dataset (a classification image or a segmentation image with its mask).

    Attributes:
        path: the image file.
        label: class index (:data:`brain_mtl.classes.CLASS_NAMES` order); -1 if it could not be determined.
        split: ``"train"``, ``"val"`` or ``"test"`` (``"val"`` also after :func:`carve_validation`).
        task: ``"classification"`` or ``"segmentation"``.
        view: ``"ax"``, ``"co"``, ``"sa"`` from the file name, or ``"?"``.
        mask_path: the mask file of a segmentation image, else None.
        digest: content hash of the image file (equal digests = byte-identical files).
        height: image height in pixels as stored.
        width: image width in pixels as stored.
        channels: channels as stored (1 gray, 3 RGB, 4 RGBA).
        mask_area: tumour fraction of the mask (segmentation images), else None.
    """

    path: Path
    label: int
    split: str
    task: str
    view: str = "?"
    mask_path: Path | None = None
    digest: str = ""
    height: int = 0
    width: int = 0
    channels: int = 0
    mask_area: float | None = None

    @property
    def stem(self) -> str:
        """File name without extension: the key that pairs a segmentation image with its classification copy."""
        return self.path.stem


@dataclass
class DatasetIndex:
    """Every image found under a dataset root, and every problem found with it.

    Attributes:
        root: the dataset root.
        records: classification and segmentation images, sorted by task, split and path.
        problems: errors and warnings, in the order they were found.
        has_val_split: the folder has its own ``val`` split (so none is carved from train).
        carved_validation: ``val`` was carved from ``train`` by :func:`carve_validation`.
    """

    root: Path
    records: list[ImageRecord] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    has_val_split: bool = False
    carved_validation: bool = False

    @property
    def errors(self) -> list[Problem]:
        """Problems that make the folder unusable."""
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        """Problems that are only reported."""
        return [p for p in self.problems if p.severity == "warning"]

    def classification(self, split: str) -> list[ImageRecord]:
        """Classification images of a split."""
        return [r for r in self.records if r.task == "classification" and r.split == split]

    def segmentation(self, split: str) -> list[ImageRecord]:
        """Segmentation images (with masks) of a split."""
        return [r for r in self.records if r.task == "segmentation" and r.split == split]

    @property
    def splits(self) -> list[str]:
        """Splits that hold at least one image, in ``train, val, test`` order."""
        present = {r.split for r in self.records}
        return [s for s in SPLITS if s in present]

    def raise_for_errors(self) -> None:
        """Raise one :class:`DatasetError` listing every error (one per line), if there is any."""
        errors = self.errors
        if errors:
            lines = "\n".join(f"  - {p}" for p in errors)
            raise DatasetError(
                f"{len(errors)} problem(s) in the dataset at {self.root} "
                f"(run `python -m brain_mtl check-data --root {self.root}` for the full report):\n{lines}"
            )


# ------------------------------------------------------------------------------------------------------------
# File names and labels
# ------------------------------------------------------------------------------------------------------------
def parse_name(stem: str) -> tuple[str | None, str]:
    """Read the class code and view from a file name (without extension).

    Args:
        stem: e.g. ``"brisc2025_train_00010_gl_ax_t1"`` or ``"Tr-gl_0010"``.

    Returns:
        ``(code, view)``: the class code as written (lower case), or None when the name follows no known
        convention; the view code, or ``"?"``.
    """
    for pattern in _NAME_PATTERNS:
        match = pattern.match(stem)
        if match:
            groups = match.groupdict()
            view = groups.get("view")
            return groups["code"].lower(), view.lower() if view else "?"
    return None, "?"


def _known_spellings(name_map: Mapping[str, str] | None) -> str:
    keys = {**DEFAULT_NAME_MAP, **{k.lower(): v for k, v in (name_map or {}).items()}}
    return ", ".join(sorted(keys))


def _resolve(name: str, name_map: Mapping[str, str] | None) -> int | None:
    try:
        return class_index(name, name_map)
    except KeyError:
        return None


# ------------------------------------------------------------------------------------------------------------
# Reading files
# ------------------------------------------------------------------------------------------------------------
def file_digest(data: bytes) -> str:
    """Content hash used to find byte-identical files."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


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
            threads, see ``_inspect_all``), where a capture per file would wait forever on the capture lock.

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


def _inspect_all(jobs: Sequence[tuple[Path, bool]], decode: bool, threads: int | None) -> list[FileCheck]:
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


def find_duplicates(paths: Iterable[str | os.PathLike]) -> list[list[Path]]:
    """Group byte-identical files.

    Args:
        paths: files to compare (unreadable ones are skipped).

    Returns:
        Groups of two or more paths whose contents are identical, each sorted, groups sorted by first path.
    """
    by_size: dict[int, list[Path]] = defaultdict(list)
    for p in paths:
        p = Path(p)
        try:
            by_size[p.stat().st_size].append(p)
        except OSError:
            continue
    groups: dict[str, list[Path]] = defaultdict(list)
    for same_size in by_size.values():
        if len(same_size) < 2:
            continue
        for p in same_size:
            try:
                groups[file_digest(p.read_bytes())].append(p)
            except OSError:
                continue
    return sorted((sorted(g) for g in groups.values() if len(g) >= 2), key=lambda g: str(g[0]))


def duplicate_groups(
    index: DatasetIndex, task: str = "classification", splits: Sequence[str] | None = None
) -> list[list[ImageRecord]]:
    """Groups of byte-identical images of one task in an indexed root.

    Args:
        index: from :func:`index_dataset`.
        task: ``"classification"`` or ``"segmentation"`` (segmentation images are copies of classification
            images in BRISC, so the two tasks are compared separately).
        splits: restrict to these splits (default: all).

    Returns:
        Groups of two or more records with the same content hash.
    """
    groups: dict[str, list[ImageRecord]] = defaultdict(list)
    for r in index.records:
        if r.task == task and r.digest and (splits is None or r.split in splits):
            groups[r.digest].append(r)
    return sorted((g for g in groups.values() if len(g) >= 2), key=lambda g: str(g[0].path))


def cross_split_duplicates(
    index_or_root: DatasetIndex | str | os.PathLike,
    splits: tuple[str, str] = ("train", "test"),
    task: str = "classification",
    class_name_map: Mapping[str, str] | None = None,
) -> list[list[Path]]:
    """Duplicate groups that span two splits (leakage: the same image is trained on and tested on).

    Args:
        index_or_root: an indexed root, or a dataset root to index (hashes only, no decoding).
        splits: the two splits to compare.
        task: which task's images to compare.
        class_name_map: extra class spellings, when a root is given.

    Returns:
        Groups of byte-identical image paths with members in both splits.
    """
    index = index_or_root
    if not isinstance(index, DatasetIndex):
        index = index_dataset(index, class_name_map=class_name_map, decode=False)
    result = []
    for group in duplicate_groups(index, task, splits):
        if {r.split for r in group} >= set(splits):
            result.append(sorted(r.path for r in group))
    return result


# ------------------------------------------------------------------------------------------------------------
# Indexing
# ------------------------------------------------------------------------------------------------------------
def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def _is_junk(path: Path) -> bool:
    return path.name.startswith(".") or path.name.lower() in _IGNORED_FILES


def _find_nested_root(root: Path) -> Path | None:
    """A folder up to two levels below ``root`` (or its parent) that looks like a dataset root."""
    candidates: list[Path] = []
    if root.name in TASKS:
        candidates.append(root.parent)
    try:
        for child in sorted(root.iterdir()):
            if child.is_dir():
                candidates.append(child)
                candidates.extend(sorted(c for c in child.iterdir() if c.is_dir()))
    except OSError:
        pass
    for candidate in candidates:
        if any((candidate / t).is_dir() for t in TASKS):
            return candidate
    return None


def _check_root(root: Path, problems: list[Problem]) -> bool:
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
        nested = _find_nested_root(root)
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


def _split_dirs(task_dir: Path, problems: list[Problem]) -> list[tuple[str, Path]]:
    found = []
    for child in sorted(task_dir.iterdir()) if task_dir.is_dir() else []:
        if not child.is_dir():
            if not _is_junk(child):
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
        elif not _is_junk(child):
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


def _image_files(folder: Path, problems: list[Problem]) -> list[Path]:
    files = []
    for child in sorted(folder.iterdir()):
        if _is_junk(child):
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
        elif _is_image(child):
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


def _report_file(check: FileCheck, path: Path, also_remove: str, problems: list[Problem]) -> bool:
    """Turn one file's check into problems (its error, its warnings); True when the file is unusable."""
    for kind, message, fix in check.notes:
        problems.append(Problem(kind, path, message, fix, "warning"))
    if not check.error:
        return False
    fix = check.fix or _REPLACE_FIX
    if also_remove and fix.endswith("or remove it."):
        fix = fix[: -len(".")] + also_remove + "."
    problems.append(Problem(check.error_kind or "unreadable", path, check.error, fix))
    return True


def index_dataset(
    root: str | os.PathLike,
    class_name_map: Mapping[str, str] | None = None,
    decode: bool = True,
    threads: int | None = None,
) -> DatasetIndex:
    """Index and check a dataset root in the BRISC layout.

    Every problem is collected (never raised) in ``index.problems``; call
    :meth:`DatasetIndex.raise_for_errors` to stop on errors.

    Errors: empty or wrong root, missing task/train folders, unknown class folder or file-name code, labels that
    disagree (folder vs file-name code, segmentation vs classification copy, identical files in different
    classes), missing mask, mask without image, two masks for one image, image/mask size mismatch, unreadable
    or truncated file, empty mask on a tumour image (or a non-empty one on a no-tumour image), segmentation image
    whose class cannot be told. Warnings: ignored files/folders, classes absent from a split, byte-identical
    images across splits.

    Args:
        root: dataset root.
        class_name_map: extra or replacement spellings (folder names, file-name codes) -> class name, merged over
            :data:`brain_mtl.classes.DEFAULT_NAME_MAP`, e.g. ``{"notumor": "no_tumor"}``.
        decode: decode every image and mask (size, truncation, mask area); False only hashes the files.
        threads: reader threads (default: up to 8, from the CPU count).

    Returns:
        The :class:`DatasetIndex`.
    """
    root = Path(root)
    index = DatasetIndex(root=root)
    problems = index.problems
    if not _check_root(root, problems):
        return index

    known = _known_spellings(class_name_map)
    name_fix = f"rename it, or add its spelling to data.class_name_map (known: {known})."
    pending: list[dict] = []  # records before their files are read

    # Classification: label from the class folder, cross-checked with the file-name code.
    for split, split_dir in _split_dirs(root / "classification_task", problems):
        if split == "val":
            index.has_val_split = True
        seen_classes = set()
        empty_class_dirs: dict[int, Path] = {}  # class -> a folder of it that holds no image
        for class_dir in sorted(split_dir.iterdir()):
            if _is_junk(class_dir):
                continue
            if not class_dir.is_dir():
                if _is_image(class_dir):
                    problems.append(
                        Problem(
                            "unknown_class",
                            class_dir,
                            "image outside any class folder: its class is unknown.",
                            "move it into its class folder.",
                        )
                    )
                continue
            folder_label = _resolve(class_dir.name, class_name_map)
            files = _image_files(class_dir, problems)
            if folder_label is not None and not files:
                empty_class_dirs.setdefault(folder_label, class_dir)
                continue
            if folder_label is None:
                problems.append(
                    Problem(
                        "unknown_class",
                        class_dir,
                        f"unknown class folder {class_dir.name!r} ({len(files)} images).",
                        name_fix,
                    )
                )
                continue
            seen_classes.add(folder_label)
            for path in files:
                code, view = parse_name(path.stem)
                label = folder_label
                if code is not None:
                    code_label = _resolve(code, class_name_map)
                    if code_label is None:
                        problems.append(
                            Problem("unknown_class", path, f"unknown class code {code!r} in the file name.", name_fix)
                        )
                    elif code_label != folder_label:
                        problems.append(
                            Problem(
                                "label_conflict",
                                path,
                                f"conflicting labels: the folder says "
                                f"{CLASS_NAMES[folder_label]} but the file-name code {code!r} says "
                                f"{CLASS_NAMES[code_label]}.",
                                "move the file to its class folder or fix its name.",
                            )
                        )
                pending.append({"path": path, "label": label, "split": split, "task": "classification", "view": view})
        if seen_classes or empty_class_dirs:
            for label, class_dir in sorted(empty_class_dirs.items()):
                if label not in seen_classes:
                    problems.append(
                        Problem(
                            "missing_class",
                            class_dir,
                            f"the class folder is empty: no images of {CLASS_NAMES[label]} in this split.",
                            "put its images in it (an interrupted copy?), or remove the folder if the split "
                            "should not cover the class.",
                            "warning",
                        )
                    )
            missing = [i for i in range(len(CLASS_NAMES)) if i not in seen_classes and i not in empty_class_dirs]
            if missing:
                problems.append(
                    Problem(
                        "missing_class",
                        split_dir,
                        f"no images of {', '.join(CLASS_NAMES[i] for i in missing)} in this split.",
                        "add them if the split should cover every class.",
                        "warning",
                    )
                )

    # Segmentation: images/ and masks/ paired by file name without extension.
    for split, split_dir in _split_dirs(root / "segmentation_task", problems):
        if split == "val":
            index.has_val_split = True
        image_dir, mask_dir = split_dir / "images", split_dir / "masks"
        for folder in (image_dir, mask_dir):
            if not folder.is_dir():
                problems.append(
                    Problem(
                        "bad_root",
                        folder,
                        f"the {folder.name}/ folder is missing.",
                        f"put the segmentation {folder.name} in {folder}.",
                    )
                )
        images = _image_files(image_dir, problems) if image_dir.is_dir() else []
        masks = _image_files(mask_dir, problems) if mask_dir.is_dir() else []
        masks_by_stem: dict[str, list[Path]] = defaultdict(list)
        for m in masks:
            masks_by_stem[m.stem].append(m)
        image_stems = Counter(p.stem for p in images)
        for stem, count in image_stems.items():
            if count > 1:
                same = sorted(p.name for p in images if p.stem == stem)
                problems.append(
                    Problem(
                        "ambiguous_image",
                        image_dir / same[0],
                        f"{count} images share the name {stem!r} ({', '.join(same)}): a mask cannot be paired.",
                        "keep one of them.",
                    )
                )
        for stem, group in sorted(masks_by_stem.items()):
            if stem not in image_stems:
                for m in group:
                    problems.append(
                        Problem(
                            "orphan_mask",
                            m,
                            f"mask without image: no file named {stem}.* in {image_dir}.",
                            "add the image or remove the mask.",
                        )
                    )
            elif len(group) > 1:
                problems.append(
                    Problem(
                        "ambiguous_mask",
                        group[0],
                        f"{len(group)} masks for image {stem!r} ({', '.join(sorted(m.name for m in group))}).",
                        "keep one of them.",
                    )
                )
        for path in images:
            group = masks_by_stem.get(path.stem, [])
            if not group:
                problems.append(
                    Problem(
                        "missing_mask",
                        path,
                        f"missing mask: no file named {path.stem}.* in {mask_dir}.",
                        "add the mask (same name, e.g. .png) or remove the image.",
                    )
                )
                continue
            code, view = parse_name(path.stem)
            label = -1
            if code is not None:
                resolved = _resolve(code, class_name_map)
                if resolved is None:
                    problems.append(
                        Problem("unknown_class", path, f"unknown class code {code!r} in the file name.", name_fix)
                    )
                else:
                    label = resolved
            pending.append(
                {
                    "path": path,
                    "label": label,
                    "split": split,
                    "task": "segmentation",
                    "view": view,
                    "mask_path": group[0],
                    "code": code,
                }
            )

    # Read every file once (threads): hash, truncation, decoding, sizes, mask areas.
    jobs: list[tuple[Path, bool]] = []
    for item in pending:
        jobs.append((item["path"], False))
        if item.get("mask_path") is not None:
            jobs.append((item["mask_path"], True))
    checks = dict(zip((p for p, _ in jobs), _inspect_all(jobs, decode, threads), strict=True))

    records: list[ImageRecord] = []
    for item in pending:
        check = checks[item["path"]]
        bad = _report_file(check, item["path"], "", problems)
        mask_check = checks.get(item.get("mask_path")) if item.get("mask_path") is not None else None
        if mask_check is not None:
            bad = _report_file(mask_check, item["mask_path"], " and its image", problems) or bad
        if (
            decode
            and not bad
            and mask_check is not None
            and (check.height, check.width) != (mask_check.height, mask_check.width)
        ):
            problems.append(
                Problem(
                    "size_mismatch",
                    item["mask_path"],
                    f"image/mask size mismatch: the mask is "
                    f"{mask_check.width}x{mask_check.height} but its image {item['path'].name} is "
                    f"{check.width}x{check.height} (width x height).",
                    "re-export the mask at the image's size.",
                )
            )
        records.append(
            ImageRecord(
                path=item["path"],
                label=item["label"],
                split=item["split"],
                task=item["task"],
                view=item["view"],
                mask_path=item.get("mask_path"),
                digest=check.digest or "",
                height=check.height,
                width=check.width,
                channels=check.channels,
                mask_area=mask_check.mask_area if mask_check is not None else None,
            )
        )

    records = _label_segmentation(records, problems)
    _check_masks(records, problems, decode)
    _check_duplicates(records, problems)
    index.records = sorted(records, key=lambda r: (r.task, SPLITS.index(r.split), str(r.path)))
    if (
        not any(r.task == "classification" and r.split == "train" for r in records)
        and (root / "classification_task" / "train").is_dir()
    ):
        problems.append(
            Problem(
                "empty",
                root / "classification_task" / "train",
                "no classification images in the train split.",
                "put images in <class folder>/ sub-folders of it.",
            )
        )
    if (
        not any(r.task == "segmentation" and r.split == "train" for r in records)
        and (root / "segmentation_task" / "train").is_dir()
    ):
        problems.append(
            Problem(
                "empty",
                root / "segmentation_task" / "train",
                "no segmentation pairs in the train split.",
                "put images in images/ and their masks in masks/.",
            )
        )
    both_tasks = all((root / t).is_dir() for t in TASKS)
    for split in ("val", "test") if both_tasks else ():
        has_cls = any(r.task == "classification" and r.split == split for r in records)
        has_seg = any(r.task == "segmentation" and r.split == split for r in records)
        if has_cls != has_seg:
            missing = "segmentation_task" if has_cls else "classification_task"
            problems.append(
                Problem(
                    "missing_split",
                    root / missing / split,
                    f"the {split} split exists in one task only: {missing}/{split} is missing or empty.",
                    f"add {missing}/{split}, or remove the other {split} folder.",
                )
            )
    return index


def _label_segmentation(records: list[ImageRecord], problems: list[Problem]) -> list[ImageRecord]:
    """Give segmentation images without a file-name code the label of their classification copy; check both."""
    by_stem = {(r.split, r.stem): r for r in records if r.task == "classification"}
    by_digest: dict[str, list[ImageRecord]] = defaultdict(list)
    for r in records:
        if r.task == "classification" and r.digest:
            by_digest[r.digest].append(r)
    out = []
    for r in records:
        if r.task != "segmentation":
            out.append(r)
            continue
        twin = by_stem.get((r.split, r.stem))
        twins = [twin] if twin is not None else by_digest.get(r.digest, [])
        if r.label < 0:
            labels = {t.label for t in twins}
            if len(labels) == 1:
                r = replace(r, label=labels.pop())
            elif not parse_name(r.stem)[0]:  # an unknown code was already reported
                problems.append(
                    Problem(
                        "no_label",
                        r.path,
                        "the class of this segmentation image cannot be told: "
                        "its name has no class code and no classification image has the same name "
                        "or content.",
                        "name it in the BRISC way (…_gl_ax_t1) or add it to classification_task.",
                    )
                )
        else:
            for t in twins:
                if t.label != r.label:
                    problems.append(
                        Problem(
                            "label_conflict",
                            r.path,
                            f"conflicting labels: this segmentation image "
                            f"is {CLASS_NAMES[r.label]} but the same image {t.path} is "
                            f"{CLASS_NAMES[t.label]}.",
                            "fix the name or the folder of one of them.",
                        )
                    )
        out.append(r)
    return out


def _check_masks(records: list[ImageRecord], problems: list[Problem], decode: bool) -> None:
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


def _check_duplicates(records: list[ImageRecord], problems: list[Problem]) -> None:
    """Byte-identical classification images must share a label; report ones spanning splits."""
    groups: dict[str, list[ImageRecord]] = defaultdict(list)
    for r in records:
        if r.task == "classification" and r.digest:
            groups[r.digest].append(r)
    for group in sorted(groups.values(), key=lambda g: str(g[0].path)):
        if len(group) < 2:
            continue
        labels = {r.label for r in group}
        if len(labels) > 1:
            listing = ", ".join(f"{r.path} ({CLASS_NAMES[r.label]})" for r in group)
            problems.append(
                Problem(
                    "label_conflict",
                    group[0].path,
                    f"conflicting labels for the same image: byte-identical files in different classes: {listing}.",
                    "keep the copy in the right class folder and delete the others.",
                )
            )
        splits = sorted({r.split for r in group}, key=SPLITS.index)
        if len(splits) > 1:
            first = next(r for r in group if r.split == splits[0])
            others = ", ".join(str(r.path) for r in group if r is not first)
            problems.append(
                Problem(
                    "cross_split_duplicate",
                    first.path,
                    f"the same image (byte-identical) is in {' and '.join(splits)}: {others}.",
                    "scores on it are not held-out; remove the copy from one split if that matters.",
                    "warning",
                )
            )


# ------------------------------------------------------------------------------------------------------------
# Validation split
# ------------------------------------------------------------------------------------------------------------
def _group_images(records: Sequence[ImageRecord]) -> list[list[ImageRecord]]:
    """Union of records that are the same image: same file name (across tasks) or same bytes."""
    parent = list(range(len(records)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_by_key: dict[tuple[str, str], int] = {}
    for i, r in enumerate(records):
        for key in (("stem", r.stem), ("digest", r.digest)):
            if not key[1]:
                continue
            j = first_by_key.setdefault(key, i)
            if j != i:
                parent[find(i)] = find(j)
    groups: dict[int, list[ImageRecord]] = defaultdict(list)
    for i, r in enumerate(records):
        groups[find(i)].append(r)
    return sorted(groups.values(), key=lambda g: str(g[0].path))


def carve_validation(index: DatasetIndex, val_fraction: float = 0.1, seed: int = 42) -> DatasetIndex:
    """Move a stratified, seeded fraction of ``train`` to a ``val`` split, unless the folder has its own.

    Records that are the same image (a segmentation image and its classification copy, or byte-identical
    files) always move together, so no image is in train and validation at once in either loader. Each class
    loses ``round(val_fraction * n)`` images (at least one when it has two or more and the fraction is positive).

    Args:
        index: from :func:`index_dataset`.
        val_fraction: share of each class's training images that becomes validation (0 disables it).
        seed: the same seed picks the same images.

    Returns:
        A new index (the argument is not modified); unchanged when the root has a ``val`` split.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if index.has_val_split or val_fraction == 0:
        return index
    train = [r for r in index.records if r.split == "train"]
    groups = _group_images(train)
    by_class: dict[int, list[list[ImageRecord]]] = defaultdict(list)
    for group in groups:
        cls_labels = [r.label for r in group if r.task == "classification"]
        label = Counter(cls_labels or [r.label for r in group]).most_common(1)[0][0]
        by_class[label].append(group)
    rng = np.random.default_rng(seed)
    moved: set[int] = set()
    for label in sorted(by_class):
        class_groups = by_class[label]

        def weight(group: list[ImageRecord]) -> int:
            return sum(r.task == "classification" for r in group) or sum(r.task == "segmentation" for r in group)

        total = sum(weight(g) for g in class_groups)
        target = round(val_fraction * total)
        if target == 0 and total >= 2:
            target = 1
        taken = 0
        for i in rng.permutation(len(class_groups)):
            if taken >= target:
                break
            moved.update(id(r) for r in class_groups[i])
            taken += weight(class_groups[i])
    records = [replace(r, split="val") if id(r) in moved else r for r in index.records]
    return replace(index, records=records, carved_validation=True)
