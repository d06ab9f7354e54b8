"""The input side of a prediction run: which image files a list of files and folders stands for."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from brain_mtl.data.io import IMAGE_EXTENSIONS

__all__ = ["collect_inputs", "lies_within"]


def collect_inputs(
    inputs: Sequence[str | os.PathLike],
    recursive: bool = False,
    exclude: Sequence[str | os.PathLike] = (),
) -> list[Path]:
    """Expand files and folders into a list of files, in a stable order.

    Folders contribute their files with an image extension (see ``brain_mtl.data.io.IMAGE_EXTENSIONS``),
    sorted; ``recursive`` descends into sub-folders. Files named explicitly are kept whatever their extension
    (so that a mis-named or broken file is reported rather than silently dropped); missing paths are kept too and
    fail when read.

    Args:
        inputs: files and folders.
        recursive: descend into sub-folders.
        exclude: folders left out of the listing of any input folder they lie in, with everything below them
            (``predict-images`` passes its output folder, so that it never reads its own masks when the output is
            an input folder or lies inside one).

    Returns:
        The files, each once (folders' files sorted, in the order the inputs were given).
    """
    excluded = [Path(folder).resolve() for folder in exclude]

    def listing(folder: Path) -> list[Path]:
        inside = [e for e in excluded if e.is_relative_to(folder.resolve())]
        candidates = folder.rglob("*") if recursive else folder.iterdir()
        return sorted(
            p
            for p in candidates
            if p.is_file()
            and p.suffix.lower() in IMAGE_EXTENSIONS
            and not any(p.resolve().is_relative_to(e) for e in inside)
        )

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


def lies_within(output: str | os.PathLike, inputs: Sequence[str | os.PathLike]) -> bool:
    """Whether a folder is one of the input folders or lies inside one.

    Args:
        output: a folder (it may not exist yet).
        inputs: files and folders, as given to :func:`collect_inputs`.
    """
    resolved = Path(output).resolve()
    return any(Path(item).is_dir() and resolved.is_relative_to(Path(item).resolve()) for item in inputs)
