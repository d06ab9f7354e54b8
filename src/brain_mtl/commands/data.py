"""The data commands: ``python -m brain_mtl synth`` and ``python -m brain_mtl check-data``."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

from brain_mtl.classes import CLASS_NAMES
from brain_mtl.commands.base import UsageError, run_command
from brain_mtl.data.index import index_dataset
from brain_mtl.data.preview import dataset_preview
from brain_mtl.data.summary import format_report, summarize
from brain_mtl.data.synthetic import generate_synthetic_dataset
from brain_mtl.files import json_dumps
from brain_mtl.viz import write_png

__all__ = ["check_data", "check_data_main", "parse_class_name_map", "synth", "synth_main"]


def synth(
    root: str,
    train: int = 500,
    test: int = 100,
    seed: int = 42,
    workers: int = 0,
    duplicates: bool = True,
    preview: str | None = None,
) -> int:
    """Write a synthetic T1 brain-MRI dataset in the BRISC 2025 layout.

    The folder gets classification_task/, segmentation_task/ and manifest.csv, with the real data's quirks.
    Deterministic for a seed. Exit status 1 when the folder already holds a dataset.

    Args:
        root: output folder (must not hold a dataset yet).
        train: training images.
        test: test images.
        seed: random seed.
        workers: processes to draw with (0: this process); the output does not depend on it.
        duplicates: copy a few images as byte-identical duplicates, as BRISC has (--no_duplicates: none).
        preview: also write this PNG file: a grid of samples per class with mask outlines.

    Returns:
        The exit status: 0, or 1 when the folder already holds a dataset.

    Raises:
        UsageError: ``train`` or ``test`` is negative.
    """
    if train < 0 or test < 0:
        raise UsageError(f"--train and --test must be >= 0, got {train} and {test}")
    try:
        report = generate_synthetic_dataset(root, train, test, seed=seed, duplicates=duplicates, workers=workers)
    except FileExistsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for split, counts in report.counts.items():
        per_class = ", ".join(f"{name} {n}" for name, n in zip(CLASS_NAMES, counts, strict=True))
        print(f"{split}: {sum(counts)} images ({per_class}); {report.segmentation_pairs[split]} segmentation pairs")
    print(
        f"duplicates: {report.duplicates['within_train']} within train, {report.duplicates['train_test']} train->test"
    )
    print(f"wrote {report.root} in {report.seconds:.1f} s")
    if preview:
        write_png(preview, dataset_preview(root, split="train" if train else "test"))
        print(f"preview: {preview}")
    return 0


def parse_class_name_map(pairs: Sequence[str]) -> dict[str, str]:
    """``["notumor=no_tumor", ...]`` as ``{"notumor": "no_tumor", ...}``.

    Args:
        pairs: ``SPELLING=CLASS`` strings, ``CLASS`` one of the library's class names.

    Returns:
        The spelling -> class mapping.

    Raises:
        UsageError: a pair without ``=`` or with an unknown class name (the message names it).
    """
    mapping = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key or value not in CLASS_NAMES:
            raise UsageError(
                f"--class_name_map expects SPELLING=CLASS with CLASS in {', '.join(CLASS_NAMES)}, got {pair!r}"
            )
        mapping[key] = value
    return mapping


def check_data(
    root: str,
    class_name_map: list[str] | None = None,
    quick: bool = False,
    json: bool = False,
) -> int:
    """Check a dataset folder in the BRISC layout and print its summary and every problem.

    Indexes the dataset, reads every file, and reports counts per split/class/view, image sizes, mask areas,
    duplicates (also across splits) and every problem, each naming its file. Exit status 1 when there are errors
    (warnings alone pass).

    Args:
        root: dataset folder (holds classification_task/ and segmentation_task/).
        class_name_map: extra class spellings as SPELLING=CLASS, e.g. notumor=no_tumor glioma_tumor=glioma.
        quick: hash files only, do not decode them (no sizes, mask areas or decode errors).
        json: print the summary and problems as JSON.

    Returns:
        The exit status: 1 when there are errors, else 0.
    """
    name_map = parse_class_name_map(class_name_map or [])
    start = time.perf_counter()
    index = index_dataset(root, class_name_map=name_map or None, decode=not quick)
    summary = summarize(index)
    if json:
        summary["problems"] = [
            {
                "severity": p.severity,
                "kind": p.kind,
                "path": str(p.path) if p.path else None,
                "message": p.message,
                "fix": p.fix,
            }
            for p in index.problems
        ]
        print(json_dumps(summary, indent=2))
    else:
        print(format_report(index, summary))
        print(f"\nchecked in {time.perf_counter() - start:.1f} s")
    return 1 if index.errors else 0


def synth_main(argv: Sequence[str] | None = None) -> int:
    """``python -m brain_mtl synth``: :func:`synth` from the command line.

    Args:
        argv: arguments without the program and command names (default: ``sys.argv[1:]``).

    Returns:
        The exit status.
    """
    return run_command(synth, argv, "brain_mtl synth")


def check_data_main(argv: Sequence[str] | None = None) -> int:
    """``python -m brain_mtl check-data``: :func:`check_data` from the command line.

    Args:
        argv: arguments without the program and command names (default: ``sys.argv[1:]``).

    Returns:
        The exit status.
    """
    return run_command(check_data, argv, "brain_mtl check-data")
