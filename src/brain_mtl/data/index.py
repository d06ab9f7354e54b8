"""Index a dataset folder in the BRISC layout: find every image, label it, read every file once, check it all.

:func:`index_dataset` lists the images of both tasks (folder and file names as :mod:`brain_mtl.data.layout` knows
them), reads their label from the class folder and from the class code in the file name (through one class table,
:func:`brain_mtl.classes.class_index`), reads every file once (:func:`brain_mtl.data.inspection.inspect_files`: content
hash, size, truncation, mask area) and collects *every* problem instead of stopping at the first one.
:meth:`~brain_mtl.data.records.DatasetIndex.raise_for_errors` turns them into one
:class:`~brain_mtl.data.errors.DatasetError`. :class:`Twins` finds an image's copy in the other task (the
segmentation image of a classification image, and back); the DataModule uses it to give evaluation images their
masks.
"""

from __future__ import annotations

import csv
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path

from brain_mtl.classes import CLASS_NAMES
from brain_mtl.data.checks import (
    check_masks,
    check_pair_sizes,
    check_root,
    check_splits,
    image_files,
    split_dirs,
)
from brain_mtl.data.duplicates import check_duplicates, duplicate_groups
from brain_mtl.data.inspection import inspect_files, report_file
from brain_mtl.data.layout import (
    CLASSIFICATION_TASK,
    MANIFEST,
    SEGMENTATION_TASK,
    SPLITS,
    is_image,
    is_junk,
    known_spellings,
    parse_name,
    resolve_class,
    segmentation_dirs,
)
from brain_mtl.data.records import DatasetIndex, FoundImage, ImageRecord, Problem

__all__ = ["Twins", "attach_patients", "cross_split_duplicates", "index_dataset"]


class Twins:
    """The copies of images in one task: the same image by file name (same split) or by content (any split).

    In BRISC every segmentation image is also, byte-identical, a classification image, mostly under the same name.
    Built once from the records of one task, it answers for a record of the other task.

    Args:
        records: records of any tasks; only those of ``task`` are kept.
        task: the task whose records are looked up (``"classification"`` or ``"segmentation"``).
    """

    def __init__(self, records: Iterable[ImageRecord], task: str) -> None:
        self._by_name: dict[tuple[str, str], ImageRecord] = {}
        self._by_digest: dict[str, list[ImageRecord]] = defaultdict(list)
        for r in records:
            if r.task == task:
                self._by_name[(r.split, r.stem)] = r
                if r.digest:
                    self._by_digest[r.digest].append(r)

    def of(self, record: ImageRecord) -> list[ImageRecord]:
        """Copies of ``record``: the one of the same split and name, else every one with the same bytes.

        Args:
            record: a record of the other task.

        Returns:
            The copies, those of ``record``'s split first; empty when there is none.
        """
        named = self._by_name.get((record.split, record.stem))
        if named is not None:
            return [named]
        same_bytes = self._by_digest.get(record.digest, []) if record.digest else []
        return sorted(same_bytes, key=lambda r: r.split != record.split)

    def first(self, record: ImageRecord) -> ImageRecord | None:
        """The best copy of ``record`` (see :meth:`of`), or None."""
        copies = self.of(record)
        return copies[0] if copies else None


def index_dataset(
    root: str | os.PathLike,
    class_name_map: Mapping[str, str] | None = None,
    decode: bool = True,
    threads: int | None = None,
) -> DatasetIndex:
    """Index and check a dataset root in the BRISC layout.

    Every problem is collected (never raised) in ``index.problems``; call
    :meth:`~brain_mtl.data.records.DatasetIndex.raise_for_errors` to stop on errors.

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
        The :class:`~brain_mtl.data.records.DatasetIndex`.
    """
    root = Path(root)
    index = DatasetIndex(root=root)
    problems = index.problems
    if not check_root(root, problems):
        return index

    name_fix = f"rename it, or add its spelling to data.class_name_map (known: {known_spellings(class_name_map)})."
    found: list[FoundImage] = []
    for split, split_dir in split_dirs(root / CLASSIFICATION_TASK, problems):
        index.has_val_split |= split == "val"
        found += _classification_images(split, split_dir, class_name_map, name_fix, problems)
    for split, _ in split_dirs(root / SEGMENTATION_TASK, problems):
        index.has_val_split |= split == "val"
        found += _segmentation_images(root, split, class_name_map, name_fix, problems)

    _check_unique_names(found, problems)
    records = _read_files(found, decode, threads, problems)
    records = _label_segmentation(records, problems)
    check_masks(records, problems, decode)
    check_duplicates(records, problems)
    records = attach_patients(root, records, problems)
    index.records = sorted(records, key=lambda r: (r.task, SPLITS.index(r.split), str(r.path)))
    check_splits(root, index.records, problems)
    return index


def attach_patients(root: Path, records: list[ImageRecord], problems: list[Problem]) -> list[ImageRecord]:
    """Records with their patient id from ``<root>/manifest.csv`` (columns ``image`` and ``patient_id``), if any.

    ``image`` is a file path relative to the root (or a file name); a record gets the patient of the manifest row
    with its file name stem, so an image's classification and segmentation copies get the same one. A stem given
    two patients is an error (the split could not keep both patients whole); a manifest without a ``patient_id``
    column (the synthetic generator's) is not read for patients.
    """
    path = root / MANIFEST
    if not path.is_file():
        return records
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if not {"image", "patient_id"} <= set(reader.fieldnames or ()):
                return records
            rows = [(Path(row["image"] or "").stem, (row["patient_id"] or "").strip()) for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        problems.append(Problem("unreadable_manifest", path, f"cannot read it ({error}).", "fix or remove it."))
        return records
    patients: dict[str, str] = {}
    for stem, patient in rows:
        if not stem or not patient:
            continue
        if patients.setdefault(stem, patient) != patient:
            problems.append(
                Problem(
                    "manifest_conflict",
                    path,
                    f"the image {stem!r} is given two patients, {patients[stem]!r} and {patient!r}.",
                    "give each image one patient id.",
                )
            )
    return [replace(r, patient=patients.get(r.stem)) if r.stem in patients else r for r in records]


def _check_unique_names(found: list[FoundImage], problems: list[Problem]) -> None:
    """Two classification images of one split with one name: an error when a segmentation image has it, else a warning.

    Images are paired across tasks by name (:class:`Twins`): with ``glioma/case7.jpg`` and ``meningioma/case7.jpg``
    a segmentation image named ``case7`` would take either label, and the other image its mask.
    """
    segmentation = {(item.split, item.path.stem) for item in found if item.task == "segmentation"}
    by_name: dict[tuple[str, str], list[FoundImage]] = defaultdict(list)
    for item in found:
        if item.task == "classification":
            by_name[(item.split, item.path.stem)].append(item)
    for (split, stem), items in sorted(by_name.items()):
        if len(items) < 2:
            continue
        listing = ", ".join(f"{item.path} ({CLASS_NAMES[item.label]})" for item in items)
        paired = (split, stem) in segmentation
        consequence = (
            f"the segmentation image {stem!r} and its mask are paired by name, so either could get the other's "
            "label or mask"
            if paired
            else "a segmentation image of that name would be paired with either of them"
        )
        problems.append(
            Problem(
                "ambiguous_name",
                items[0].path,
                f"{len(items)} classification images of the {split} split are named {stem!r}: {listing}; "
                f"{consequence}.",
                "rename all but one (each image's name must be unique within its split).",
                "error" if paired else "warning",
            )
        )


def _code_label(
    path: Path, name_map: Mapping[str, str] | None, name_fix: str, problems: list[Problem]
) -> tuple[str | None, int | None, str]:
    """``(file-name code, its label, view)``; code and label None when absent; an unknown code is an error."""
    code, view = parse_name(path.stem)
    label = None if code is None else resolve_class(code, name_map)
    if code is not None and label is None:
        problems.append(Problem("unknown_class", path, f"unknown class code {code!r} in the file name.", name_fix))
    return code, label, view


def _classification_images(
    split: str, split_dir: Path, name_map: Mapping[str, str] | None, name_fix: str, problems: list[Problem]
) -> list[FoundImage]:
    """Images of one classification split: label from the class folder, cross-checked with the file-name code."""
    found: list[FoundImage] = []
    seen_classes: set[int] = set()
    empty_class_dirs: dict[int, Path] = {}  # class -> a folder of it that holds no image
    for class_dir in sorted(split_dir.iterdir()):
        if is_junk(class_dir):
            continue
        if not class_dir.is_dir():
            if is_image(class_dir):
                problems.append(
                    Problem(
                        "unknown_class",
                        class_dir,
                        "image outside any class folder: its class is unknown.",
                        "move it into its class folder.",
                    )
                )
            continue
        folder_label = resolve_class(class_dir.name, name_map)
        files = image_files(class_dir, problems)
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
            code, code_label, view = _code_label(path, name_map, name_fix, problems)
            if code_label is not None and code_label != folder_label:
                problems.append(
                    Problem(
                        "label_conflict",
                        path,
                        f"conflicting labels: the folder says {CLASS_NAMES[folder_label]} but the file-name code "
                        f"{code!r} says {CLASS_NAMES[code_label]}.",
                        "move the file to its class folder or fix its name.",
                    )
                )
            found.append(FoundImage(path, folder_label, split, "classification", view))
    if seen_classes or empty_class_dirs:
        _report_missing_classes(split_dir, seen_classes, empty_class_dirs, problems)
    return found


def _report_missing_classes(
    split_dir: Path, seen: set[int], empty_dirs: dict[int, Path], problems: list[Problem]
) -> None:
    for label, class_dir in sorted(empty_dirs.items()):
        if label not in seen:
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
    missing = [i for i in range(len(CLASS_NAMES)) if i not in seen and i not in empty_dirs]
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


def _segmentation_images(
    root: Path, split: str, name_map: Mapping[str, str] | None, name_fix: str, problems: list[Problem]
) -> list[FoundImage]:
    """Pairs of one segmentation split: images/ and masks/ paired by file name without extension."""
    image_dir, mask_dir = segmentation_dirs(root, split)
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
    images = image_files(image_dir, problems) if image_dir.is_dir() else []
    masks = image_files(mask_dir, problems) if mask_dir.is_dir() else []
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
    found: list[FoundImage] = []
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
        _, label, view = _code_label(path, name_map, name_fix, problems)
        found.append(FoundImage(path, -1 if label is None else label, split, "segmentation", view, group[0]))
    return found


def _read_files(
    found: list[FoundImage], decode: bool, threads: int | None, problems: list[Problem]
) -> list[ImageRecord]:
    """Read every image and mask once (threads): hash, truncation, decoding, sizes, mask areas."""
    jobs: list[tuple[Path, bool]] = []
    for item in found:
        jobs.append((item.path, False))
        if item.mask_path is not None:
            jobs.append((item.mask_path, True))
    checks = dict(zip((p for p, _ in jobs), inspect_files(jobs, decode, threads), strict=True))

    records: list[ImageRecord] = []
    for item in found:
        check = checks[item.path]
        bad = report_file(check, item.path, "", problems)
        mask_check = checks[item.mask_path] if item.mask_path is not None else None
        if mask_check is not None:
            bad = report_file(mask_check, item.mask_path, " and its image", problems) or bad
        record = ImageRecord(
            path=item.path,
            label=item.label,
            split=item.split,
            task=item.task,
            view=item.view,
            mask_path=item.mask_path,
            digest=check.digest or "",
            height=check.height,
            width=check.width,
            channels=check.channels,
            mask_area=mask_check.mask_area if mask_check is not None else None,
            phash=check.phash,
        )
        if decode and not bad and mask_check is not None:
            check_pair_sizes(record, mask_check, problems)
        records.append(record)
    return records


def _label_segmentation(records: list[ImageRecord], problems: list[Problem]) -> list[ImageRecord]:
    """Give segmentation images without a file-name code the label of their classification copy; check both."""
    twins = Twins(records, "classification")
    out = []
    for r in records:
        if r.task != "segmentation":
            out.append(r)
            continue
        copies = twins.of(r)
        if r.label < 0:
            labels = {t.label for t in copies}
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
            for t in copies:
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
    return [
        sorted(r.path for r in group)
        for group in duplicate_groups(index, task, splits)
        if {r.split for r in group} >= set(splits)
    ]
