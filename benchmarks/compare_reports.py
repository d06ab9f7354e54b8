"""Paired comparison of two evaluation reports on the same images: the difference and its bootstrap 95% interval.

Two report folders (``report.json`` with its ``per_image.csv``) written by ``test`` on the same split (e.g. an
ensemble and one of its members) are compared image by image: tumour Dice pooled over the tumour images with a
mask, and accuracy over all images. The interval resamples images with replacement, the same resample for both
reports (paired), with the report's bootstrap (:func:`brain_mtl.evaluation.statistics.bootstrap_ci`, 1,000
resamples, seed 0)::

    python benchmarks/compare_reports.py runs/ensemble/test_report runs/member/test_report
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

from brain_mtl.evaluation.statistics import bootstrap_ci


def read_rows(folder: str | Path) -> dict[str, dict]:
    """A report folder's per-image rows (``per_image.csv``), by image path, with numbers and flags parsed."""
    rows = {}
    with open(Path(folder) / "per_image.csv", newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            rows[row["path"]] = {
                "label": row["label"],
                "predicted": row["predicted"],
                "has_mask": row["has_mask"] == "True",
                "truth_area_px": float(row["truth_area_px"]) if row["truth_area_px"] else None,
                "pred_area_px": float(row["pred_area_px"]),
                "dice": float(row["dice"]) if row["dice"] else None,
            }
    return rows


def _arrays(rows: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(tp, truth + prediction areas, tumour-with-mask flag, correct flag) per image (Dice = 2 tp / areas)."""
    tumour = np.array([r["has_mask"] and r["label"] != "no_tumor" for r in rows])
    truth = np.array([r["truth_area_px"] or 0 for r in rows], dtype=np.float64)
    pred = np.array([r["pred_area_px"] for r in rows], dtype=np.float64)
    dice = np.array([r["dice"] if r["dice"] is not None else 0.0 for r in rows], dtype=np.float64)
    tp = dice * (truth + pred) / 2  # per-image Dice = 2 tp / (truth + pred)
    correct = np.array([r["label"] == r["predicted"] for r in rows], dtype=np.float64)
    return tp, truth + pred, tumour.astype(np.float64), correct


def _pooled(tp: np.ndarray, areas: np.ndarray, tumour: np.ndarray) -> np.ndarray:
    return 2 * (tp * tumour).sum(axis=-1) / np.maximum((areas * tumour).sum(axis=-1), 1e-12)


def compare(rows_a: dict[str, dict], rows_b: dict[str, dict], n_resamples: int = 1000, seed: int = 0) -> dict:
    """Figures of ``a`` and ``b`` (:func:`read_rows`) and of ``a - b`` with paired bootstrap intervals."""
    if set(rows_a) != set(rows_b):
        raise ValueError(f"the reports cover different images ({len(rows_a)} and {len(rows_b)}, not the same paths)")
    paths = sorted(rows_a)
    tp_a, ar_a, tum, ok_a = _arrays([rows_a[p] for p in paths])
    tp_b, ar_b, _, ok_b = _arrays([rows_b[p] for p in paths])
    boot = {"n_resamples": n_resamples, "seed": seed}
    dice_diff = bootstrap_ci(
        lambda ta, aa, tb, ab, t: _pooled(ta, aa, t) - _pooled(tb, ab, t), (tp_a, ar_a, tp_b, ar_b, tum), **boot
    )
    acc_diff = bootstrap_ci(lambda x, y: x.mean(axis=1) - y.mean(axis=1), (ok_a, ok_b), **boot)
    dice_a, dice_b = float(_pooled(tp_a, ar_a, tum)), float(_pooled(tp_b, ar_b, tum))
    return {
        "images": len(paths),
        "tumour_images_with_mask": int(tum.sum()),
        "dice_pooled": {"a": dice_a, "b": dice_b, "a_minus_b": dice_a - dice_b, "ci95": list(dice_diff)},
        "accuracy": {
            "a": float(ok_a.mean()),
            "b": float(ok_b.mean()),
            "a_minus_b": float(ok_a.mean() - ok_b.mean()),
            "ci95": list(acc_diff),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", help="report folder of the first model (e.g. the ensemble)")
    parser.add_argument("b", help="report folder of the second model, on the same images")
    args = parser.parse_args(argv)
    try:
        result = compare(read_rows(args.a), read_rows(args.b))
    except (OSError, ValueError, KeyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
