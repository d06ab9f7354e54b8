"""Carve held-out parts off a BRISC-layout training split, as folders of symbolic links (no image is copied).

A cross-validation or ensemble experiment needs images that no member trained or validated on. This writes:

- ``OUT/cv``: ``train`` = the rest of the training split, ``test`` = the evaluation part;
- ``OUT/calibration`` (with ``--calibration_fraction``): the same ``train``, ``test`` = the calibration part (a
  temperature fitted there is judged on the evaluation part, which it has not seen).

Both parts are carved as the validation split is (:func:`brain_mtl.data.split.carve_validation`): stratified by
class, seeded, and near-duplicate groups whole, so no image of a held-out part has a near-copy in ``train`` or in
the other part::

    python benchmarks/carve_holdout.py --root /data/brisc2025 --out /tmp/brisc_holdout \\
        --test_fraction 0.12 --calibration_fraction 0.08
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

from brain_mtl.classes import CLASS_NAMES
from brain_mtl.data.index import index_dataset
from brain_mtl.data.layout import CLASSIFICATION_TASK, SEGMENTATION_TASK
from brain_mtl.data.records import ImageRecord
from brain_mtl.data.split import carve_validation


def _link(record: ImageRecord, root: Path, split: str) -> None:
    """Link one record's files into ``root`` in the BRISC layout, under ``split``."""
    if record.task == "classification":
        targets = [(record.path, root / CLASSIFICATION_TASK / split / record.path.parent.name / record.path.name)]
    else:
        assert record.mask_path is not None
        base = root / SEGMENTATION_TASK / split
        targets = [
            (record.path, base / "images" / record.path.name),
            (record.mask_path, base / "masks" / record.mask_path.name),
        ]
    for source, link in targets:
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(source.resolve())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, help="BRISC-layout folder whose train split is carved")
    parser.add_argument("--out", required=True, help="new folder (must not exist)")
    parser.add_argument("--test_fraction", type=float, default=0.12, help="share of train for the evaluation part")
    parser.add_argument("--calibration_fraction", type=float, default=0.0, help="share of train for calibration")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    out = Path(args.out)
    if out.exists():
        print(f"error: {out} exists: give a new folder", file=sys.stderr)
        return 2
    index = index_dataset(args.root)
    index.raise_for_errors()
    held = args.test_fraction + args.calibration_fraction
    carved = carve_validation(index, held, args.seed)
    rest = [r for r in carved.records if r.split == "train"]
    held_out = [r for r in carved.records if r.split == "val"]
    parts = {"cv": held_out}
    if args.calibration_fraction > 0:  # the held-out records, carved again into calibration and evaluation
        sub = replace(carved, records=[replace(r, split="train") for r in held_out])
        again = carve_validation(sub, args.calibration_fraction / held, args.seed + 1)
        parts = {
            "cv": [r for r in again.records if r.split == "train"],
            "calibration": [r for r in again.records if r.split == "val"],
        }
    summary = {}
    for name, test in parts.items():
        for record in rest:
            _link(record, out / name, "train")
        for record in test:
            _link(record, out / name, "test")
        counts = Counter(CLASS_NAMES[r.label] for r in test if r.task == "classification")
        summary[name] = {"test_images": sum(counts.values()), "by_class": dict(sorted(counts.items()))}
    summary["train_images"] = sum(r.task == "classification" for r in rest)
    summary.update(root=str(Path(args.root).resolve()), seed=args.seed)
    (out / "holdout.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
