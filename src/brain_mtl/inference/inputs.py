"""The input side of a prediction run: which image files a list of files and folders stands for."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from brain_mtl.data.clinical import CLINICAL_SUFFIXES, clinical_kind
from brain_mtl.data.io import IMAGE_EXTENSIONS

__all__ = ["collect_inputs", "lies_within"]


def collect_inputs(
    inputs: Sequence[str | os.PathLike],
    recursive: bool = False,
    exclude: Sequence[str | os.PathLike] = (),
    skipped: list[Path] | None = None,
) -> list[Path]:
    """Expand files and folders into a list of files, in a stable order.

    Folders contribute their files with an image extension (see ``brain_mtl.data.io.IMAGE_EXTENSIONS``), their
    DICOM and NIfTI files (:data:`~brain_mtl.data.clinical.CLINICAL_SUFFIXES`, and DICOM files without an
    extension, recognised by content), sorted; ``recursive`` descends into sub-folders. Files named explicitly are
    kept whatever their extension (so that a mis-named or broken file is reported rather than silently dropped);
    missing paths are kept too and fail when read.

    Args:
        inputs: files and folders.
        recursive: descend into sub-folders.
        exclude: folders left out of the listing of any input folder they lie in, with everything below them
            (``predict-images`` passes its output folder, so that it never reads its own masks when the output is
            an input folder or lies inside one).
        skipped: when given, the other files of the input folders (neither images nor clinical files) are appended
            to it, so that the caller can say what it left out.

    Returns:
        The files, each once (folders' files sorted, in the order the inputs were given).
    """
    excluded = [Path(folder).resolve() for folder in exclude]

    def listing(folder: Path) -> list[Path]:
        inside = [e for e in excluded if e.is_relative_to(folder.resolve())]
        candidates = folder.rglob("*") if recursive else folder.iterdir()
        found = sorted(p for p in candidates if p.is_file() and not any(p.resolve().is_relative_to(e) for e in inside))
        kept = [p for p in found if _readable_kind(p)]
        if skipped is not None:
            skipped.extend(p for p in found if p not in kept)
        return kept

    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files.extend(listing(path))
        else:
            files.append(path)
    seen: set[Path] = set()
    unique = []
    for path in files:
        key = path.resolve() if path.exists() else path
        if key not in seen:
            seen.add(key)
            unique.append(path)
    return unique


def _readable_kind(path: Path) -> bool:
    """An image extension, a clinical file ending, or (for names with no image extension) DICOM content."""
    name = path.name.lower()
    if path.suffix.lower() in IMAGE_EXTENSIONS or name.endswith(CLINICAL_SUFFIXES):
        return True
    return clinical_kind(path) == "dicom"


def lies_within(output: str | os.PathLike, inputs: Sequence[str | os.PathLike]) -> bool:
    """Whether a folder is one of the input folders or lies inside one.

    Args:
        output: a folder (it may not exist yet).
        inputs: files and folders, as given to :func:`collect_inputs`.
    """
    resolved = Path(output).resolve()
    return any(Path(item).is_dir() and resolved.is_relative_to(Path(item).resolve()) for item in inputs)
