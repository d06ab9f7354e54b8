"""Command-line entry points of the data code: ``brain_mtl synth`` and ``brain_mtl check-data``."""

from __future__ import annotations

import argparse
import sys
import time

from brain_mtl import jsonsafe
from brain_mtl.classes import CLASS_NAMES


def _name_map(pairs: list[str]) -> dict[str, str]:
    mapping = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key or value not in CLASS_NAMES:
            raise argparse.ArgumentTypeError(
                f"--class-name-map expects SPELLING=CLASS with CLASS in {', '.join(CLASS_NAMES)}, got {pair!r}"
            )
        mapping[key] = value
    return mapping


def synth_main(argv: list[str] | None = None) -> int:
    """Write a synthetic dataset in the BRISC layout (``python -m brain_mtl synth``).

    Args:
        argv: command-line arguments without the program name (default: ``sys.argv[1:]``).

    Returns:
        The exit status (0 on success, 1 when the folder already holds a dataset).
    """
    from brain_mtl.data.preview import dataset_preview
    from brain_mtl.synthetic import generate_synthetic_dataset
    from brain_mtl.viz import write_png

    parser = argparse.ArgumentParser(
        prog="brain_mtl synth",
        description="Write a synthetic T1 brain-MRI dataset in the BRISC 2025 layout (classification_task/, "
        "segmentation_task/, manifest.csv), with the real data's quirks. Deterministic for a seed.",
    )
    parser.add_argument("--root", required=True, help="output folder (must not hold a dataset yet)")
    parser.add_argument("--train", type=int, default=500, help="training images (default: 500)")
    parser.add_argument("--test", type=int, default=100, help="test images (default: 100)")
    parser.add_argument("--seed", type=int, default=42, help="random seed (default: 42)")
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="processes to draw with (default: 0, this process); the output does not depend on it",
    )
    parser.add_argument(
        "--no-duplicates",
        action="store_true",
        help="do not copy a few images as byte-identical duplicates (BRISC has such copies)",
    )
    parser.add_argument(
        "--preview", metavar="PNG", help="also write a PNG grid of samples per class with mask outlines"
    )
    args = parser.parse_args(argv)
    if args.train < 0 or args.test < 0:
        parser.error("--train and --test must be >= 0")
    try:
        report = generate_synthetic_dataset(
            args.root, args.train, args.test, seed=args.seed, duplicates=not args.no_duplicates, workers=args.workers
        )
    except FileExistsError as error:
        print(f"brain_mtl synth: {error}", file=sys.stderr)
        return 1
    for split, counts in report.counts.items():
        per_class = ", ".join(f"{name} {n}" for name, n in zip(CLASS_NAMES, counts, strict=True))
        print(f"{split}: {sum(counts)} images ({per_class}); {report.segmentation_pairs[split]} segmentation pairs")
    print(
        f"duplicates: {report.duplicates['within_train']} within train, {report.duplicates['train_test']} train->test"
    )
    print(f"wrote {report.root} in {report.seconds:.1f} s")
    if args.preview:
        write_png(args.preview, dataset_preview(args.root, split="train" if args.train else "test"))
        print(f"preview: {args.preview}")
    return 0


def check_data_main(argv: list[str] | None = None) -> int:
    """Check a dataset folder and print its summary and every problem (``python -m brain_mtl check-data``).

    Args:
        argv: command-line arguments without the program name (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 1 when there are errors, else 0 (warnings alone pass).
    """
    from brain_mtl.data.index import index_dataset
    from brain_mtl.data.summary import format_report, summarize

    parser = argparse.ArgumentParser(
        prog="brain_mtl check-data",
        description="Index a dataset in the BRISC layout, read every file, and report counts per split/class/view, "
        "image sizes, mask areas, duplicates (also across splits) and every problem, each naming its file. "
        "Exit status 1 when there are errors.",
    )
    parser.add_argument(
        "--root", required=True, help="dataset folder (holds classification_task/ and segmentation_task/)"
    )
    parser.add_argument(
        "--class-name-map",
        nargs="*",
        default=[],
        metavar="SPELLING=CLASS",
        help="extra class spellings, e.g. notumor=no_tumor glioma_tumor=glioma",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="hash files only, do not decode them (no sizes, mask areas or decode errors)",
    )
    parser.add_argument("--json", action="store_true", help="print the summary and problems as JSON")
    args = parser.parse_args(argv)
    try:
        name_map = _name_map(args.class_name_map)
    except argparse.ArgumentTypeError as error:
        parser.error(str(error))
    start = time.perf_counter()
    index = index_dataset(args.root, class_name_map=name_map or None, decode=not args.quick)
    summary = summarize(index)
    if args.json:
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
        print(jsonsafe.dumps(summary, indent=2))
    else:
        print(format_report(index, summary))
        print(f"\nchecked in {time.perf_counter() - start:.1f} s")
    return 1 if index.errors else 0
