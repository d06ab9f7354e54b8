"""``python -m brain_mtl convert figshare``: another public dataset written in the BRISC layout."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Literal

from brain_mtl.commands.base import UsageError, run_command
from brain_mtl.data.convert import CONVERT_MARKER, ConversionError, convert_figshare

__all__ = ["convert_main", "figshare"]

USAGE = "usage: brain_mtl convert figshare --input DIR --output DIR [--split train|test]"


def figshare(input: str, output: str, split: Literal["train", "test"] = "train") -> int:
    """Write Cheng et al.'s Figshare brain-tumour set (MATLAB v7.3 .mat files) as a BRISC-layout folder.

    Every slice goes into the classification and the segmentation task with its mask, and manifest.csv gives its
    patient (cjdata.PID), so that the validation split and the folds keep each patient on one side. Needs h5py
    (pip install 'brain_mtl[clinical]'). The output folder must be new or empty, or hold an interrupted or finished
    conversion of the same input (completed, or left as it is). Files that cannot be read are named and skipped;
    the exit status is then 1.

    Args:
        input: the folder holding the .mat files (searched recursively).
        output: the BRISC-layout folder to write.
        split: train (carve validation and folds from it) or test (external validation).

    Returns:
        The exit status.
    """
    try:
        result = convert_figshare(input, output, split)
    except ConversionError as error:
        raise UsageError(str(error)) from None
    if result.already_done:
        print(f"{output}: already holds the finished conversion of {input} ({CONVERT_MARKER}); nothing written")
        return 0
    for _, reason in result.failed:
        print(f"skipped: {reason}", file=sys.stderr)
    print(
        f"wrote {result.converted} slices to {output} (BRISC layout, {split} split, patients in manifest.csv); "
        f"check it with: python -m brain_mtl check-data --root {output}"
    )
    if result.failed:
        print(f"{len(result.failed)} files could not be read: " + ", ".join(f for f, _ in result.failed))
        return 1
    return 0


CONVERTERS = {"figshare": figshare}
"""Dataset name -> converter command."""


def convert_main(argv: Sequence[str] | None = None) -> int:
    """``python -m brain_mtl convert DATASET ...``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(
            USAGE,
            "",
            "Datasets:",
            *(f"  {name}: {fn.__doc__.splitlines()[0]}" for name, fn in CONVERTERS.items()),
            "",
            "python -m brain_mtl convert figshare --help: its options",
            sep="\n",
        )
        if args:
            raise SystemExit(0)
        return 2
    if args[0] not in CONVERTERS:
        print(f"error: unknown dataset {args[0]!r}: convert knows {', '.join(CONVERTERS)}. {USAGE}", file=sys.stderr)
        return 2
    return run_command(CONVERTERS[args[0]], args[1:], f"brain_mtl convert {args[0]}")
