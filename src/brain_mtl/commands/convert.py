"""``python -m brain_mtl convert figshare|folders``: another public dataset written in the BRISC layout."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Literal

from brain_mtl.commands.base import UsageError, run_command
from brain_mtl.data.convert import CONVERT_MARKER, ConversionError, ConversionResult, convert_figshare, convert_folders

__all__ = ["convert_main", "figshare", "folders"]

USAGE = (
    "usage: brain_mtl convert figshare --input DIR --output DIR [--split train|test]\n"
    "       brain_mtl convert folders --input DIR --output DIR [--class_name_map '{notumor: no_tumor}']"
)


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
    hint = f"check it with: python -m brain_mtl check-data --root {output}"
    return _summary(result, input, output, f"{split} split, patients in manifest.csv", hint)


def folders(input: str, output: str, class_name_map: dict[str, str] | None = None) -> int:
    """Copy a Training|Testing/<class>/ image tree (the 7,023-image Kaggle set) into a BRISC-layout folder.

    Training becomes train, Testing test; class folders are read with brain_mtl's spellings and --class_name_map.
    Classification only (no masks): a folder to test on, e.g. for external validation. The output folder must be
    new or empty, or hold an interrupted or finished conversion of the same input.

    Args:
        input: the folder holding Training/ and Testing/ (or train/, test/, val/).
        output: the BRISC-layout folder to write.
        class_name_map: extra class folder spellings, e.g. {notumor: no_tumor}.

    Returns:
        The exit status.
    """
    try:
        result = convert_folders(input, output, class_name_map)
    except ConversionError as error:
        raise UsageError(str(error)) from None
    hint = (
        f"test a trained network on it with: python -m brain_mtl test --config CFG --ckpt_path X --data.root {output}"
    )
    return _summary(result, input, output, "classification only", hint)


def _summary(result: ConversionResult, input: str, output: str, what: str, hint: str) -> int:
    if result.already_done:
        print(f"{output}: already holds the finished conversion of {input} ({CONVERT_MARKER}); nothing written")
        return 0
    for _, reason in result.failed:
        print(f"skipped: {reason}", file=sys.stderr)
    print(f"wrote {result.converted} images to {output} (BRISC layout, {what}); {hint}")
    if result.failed:
        print(f"{len(result.failed)} files could not be read: " + ", ".join(f for f, _ in result.failed))
        return 1
    return 0


CONVERTERS = {"figshare": figshare, "folders": folders}
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
            "python -m brain_mtl convert DATASET --help: its options",
            sep="\n",
        )
        if args:
            raise SystemExit(0)
        return 2
    if args[0] not in CONVERTERS:
        print(f"error: unknown dataset {args[0]!r}: convert knows {', '.join(CONVERTERS)}. {USAGE}", file=sys.stderr)
        return 2
    return run_command(CONVERTERS[args[0]], args[1:], f"brain_mtl convert {args[0]}")
