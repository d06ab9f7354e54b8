"""Writing the evaluation report; nothing here computes a figure.

Files: ``report.md`` (readable tables), ``report.json`` (every number), ``per_image.csv`` and
``confusion_matrix.png``.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from brain_mtl.evaluation.report import Report
from brain_mtl.files import atomic_path, atomic_write_text, csv_cell, json_dumps, json_ready
from brain_mtl.viz import confusion_matrix_image, write_png

__all__ = ["report_markdown", "write_report"]


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | np.integer):
        return str(int(value))
    value = float(value)
    return "n/a" if not math.isfinite(value) else f"{value:.{digits}f}"


def _ci(item: dict) -> str:
    low, high = item["ci95"]
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        return "n/a"
    return f"[{_fmt(low)}, {_fmt(high)}]"


_NEAR_ROWS = 50
"""Near-duplicate rows shown in report.md (all of them are in report.json)."""


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def _seg_rows(blocks: dict[str, dict]) -> list[list[str]]:
    rows = []
    for name, b in blocks.items():
        d, i, h = b["dice_per_image"], b["iou_per_image"], b["hd95_px"]
        rows.append(
            [
                name,
                b["n_images"],
                _fmt(b["dice_pooled"]),
                _fmt(d["mean"]),
                _fmt(d["sd"]),
                _fmt(d["median"]),
                _fmt(b["iou_pooled"]),
                _fmt(i["mean"]),
                _fmt(b["pixel_accuracy_pooled"]),
                _fmt(h["mean"], 2),
                _fmt(h["median"], 2),
                h["n_undefined_one_empty"],
            ]
        )
    return rows


_SEG_HEADER = (
    "images",
    "n",
    "Dice pooled",
    "Dice mean",
    "Dice sd",
    "Dice median",
    "IoU pooled",
    "IoU mean",
    "pixel acc.",
    "HD95 mean",
    "HD95 median",
    "HD95 undefined",
)


def report_markdown(report: Report | dict) -> str:
    """The report as readable Markdown tables, with its conventions stated.

    Rendered from the report's JSON form (:meth:`Report.to_dict`), so that ``report.md`` shows exactly what
    ``report.json`` holds.
    """
    if isinstance(report, Report):
        report = json_ready(report.to_dict())
    meta, cls = report["meta"], report["classification"]
    lines = ["# Evaluation report", ""]
    if meta.get("data_synthetic"):
        lines += [
            f"> **Synthetic data.** These figures are on the synthetic dataset in `{meta.get('data_root')}` (drawn "
            "by brain_mtl), not on real MRI scans: they show that the pipeline works, not how the model does on "
            "patients.",
            "",
        ]
    if meta.get("external"):
        absent = [name for name, count in meta["n_images_per_class"].items() if not count]
        mapping = ", ".join(f"{k} -> {v}" for k, v in (meta.get("class_name_map") or {}).items()) or "none"
        lines += [
            f"> **External validation.** The network was trained on `{meta.get('trained_on')}` and is tested here on "
            f"`{meta.get('data_root')}`, another dataset (class spellings mapped: {mapping}). "
            + (
                f"Classes absent from it: {', '.join(absent)}; their per-class figures are not measured here. "
                if absent
                else ""
            )
            + (
                "Segmentation figures cover only the images whose mask this dataset gives."
                if meta["n_tumour_images_with_mask"]
                else "It has no tumour masks: the segmentation figures are not measured (n/a)."
            ),
            "",
        ]
    synthetic = meta.get("data_synthetic")
    facts = [
        ("data root", meta.get("data_root") or "n/a"),
        ("trained on", meta.get("trained_on") or "not recorded"),
        ("external validation", "yes" if meta.get("external") else "no" if "external" in meta else "unknown"),
        (
            "synthetic data",
            "unknown" if synthetic is None else "yes (written by the brain_mtl generator)" if synthetic else "no",
        ),
        ("split", meta.get("split", "n/a")),
        (
            ("ensemble", f"{meta['ensemble']}: the averaged probabilities of {', '.join(meta['ensemble_members'])}")
            if meta.get("ensemble") and len(meta.get("ensemble_members") or ()) > 1
            else ("checkpoint", f"{meta['ensemble']}: {meta['ensemble_members'][0]}, calibrated")
            if meta.get("ensemble")
            else ("checkpoint", meta.get("ckpt_path") or "n/a")
        ),
        ("created (UTC)", meta["created_utc"]),
        ("test images", meta["n_images"]),
        ("images with a known mask", meta["n_images_with_mask"]),
        ("tumour images with a mask", meta["n_tumour_images_with_mask"]),
        ("tumour images without a mask (left out of segmentation)", meta["n_tumour_images_without_mask"]),
        ("no-tumour images", meta["n_no_tumour_images"]),
        ("images per class", ", ".join(f"{k} {v}" for k, v in meta["n_images_per_class"].items())),
        ("evaluated grid (H x W)", ", ".join(meta["evaluated_grid_sizes"])),
        ("mask threshold", meta["mask_threshold"]),
        ("test-time augmentation", meta.get("tta", "none")),
        ("mask gate", f"{meta['mask_gate']} (class veto, min area {meta['gate_min_area_px']} px)"),
        ("false-mask min area", f"{meta['false_mask_min_area_px']} px"),
        ("bootstrap", f"{meta['bootstrap_resamples']} resamples, seed {meta['bootstrap_seed']}"),
    ]
    lines += _table(("", ""), facts)

    lines += ["", "## Headline numbers", ""]
    rows = []
    for key, item in cls["headline"].items():
        rows.append([item["name"], key, _fmt(item["value"]), _ci(item), "-", item["n_images"], item["over"]])
    variants = [("ungated", report["ungated"]), ("gated", report["gated"])]
    for key in report["ungated"]["headline"]:
        item = report["ungated"]["headline"][key]
        gated = report["gated"]["headline"][key] if report["gated"] else None
        gated_cell = "-"
        if gated:
            gated_cell = _fmt(gated["value"]) if _ci(gated) == "n/a" else f"{_fmt(gated['value'])} {_ci(gated)}"
            if gated["n_images"] != item["n_images"]:
                gated_cell += f" (n = {gated['n_images']})"
        rows.append([item["name"], key, _fmt(item["value"]), _ci(item), gated_cell, item["n_images"], item["over"]])
    lines += _table(("figure", "key", "value", "95% interval", "with mask gate (value, interval)", "n", "over"), rows)
    lines += ["", f"ECE (15 bins, all {cls['n_images']} images): {_fmt(cls['ece'])}; NLL: {_fmt(cls.get('nll'))}"]
    if cls.get("calibration"):
        cal = cls["calibration"]
        lines += [
            "",
            f"Class head calibrated (temperature {cal['temperature']:.3f}, `python -m brain_mtl calibrate`): ECE "
            f"{_fmt(cal['before']['ece'])} -> {_fmt(cal['after']['ece'])}, NLL {_fmt(cal['before']['nll'])} -> "
            f"{_fmt(cal['after']['nll'])} (without -> with the temperature; the classes predicted are the same).",
        ]

    lines += ["", "## Classification", "", f"Over all {cls['n_images']} images.", ""]
    rows = [
        [name, _fmt(v["precision"]), _fmt(v["recall"]), _fmt(v["f1"]), v["support"]]
        for name, v in cls["per_class"].items()
    ]
    rows.append(["macro", _fmt(cls["macro_precision"]), _fmt(cls["macro_recall"]), _fmt(cls["macro_f1"]), "-"])
    lines += _table(("class", "precision", "recall", "F1", "support"), rows)
    names = cls["confusion_matrix"]["classes"]
    lines += ["", "Confusion matrix (rows: true class, columns: predicted; also `confusion_matrix.png`):", ""]
    lines += _table(
        ("true \\ predicted", *names), ([names[i], *row] for i, row in enumerate(cls["confusion_matrix"]["counts"]))
    )

    for title, section in variants:
        if section is None:
            continue
        seg = section["tumour_segmentation"]
        label = "without the mask gate" if title == "ungated" else "with the mask gate"
        lines += ["", f"## Segmentation {label}", ""]
        if title == "gated":
            lines += [f"The gate emptied {section['n_masks_emptied_by_gate']} non-empty predicted masks.", ""]
        lines += ["Tumour images with a ground-truth mask, overall, per true class and per size tercile:", ""]
        q1, q2 = seg["by_size"]["edges_share_of_image"]
        size_names = {
            "small": f"small (<= {_fmt(100 * q1 if q1 is not None else None, 2)}% of image)",
            "medium": f"medium ({_fmt(100 * q1 if q1 is not None else None, 2)}-"
            f"{_fmt(100 * q2 if q2 is not None else None, 2)}%)",
            "large": f"large (> {_fmt(100 * q2 if q2 is not None else None, 2)}% of image)",
        }
        blocks = {
            "all tumour images": seg["overall"],
            **seg["by_class"],
            **{size_names[k]: seg["by_size"][k] for k in ("small", "medium", "large")},
        }
        lines += _table(_SEG_HEADER, _seg_rows(blocks))
        a, f = section["all_images"], section["false_masks"]
        lines += [
            "",
            f"All images with a known mask (n = {a['n_images']}: {a['n_tumour']} tumour, {a['n_no_tumour']} "
            f"no-tumour; {a['n_excluded_unknown_mask']} left out, mask unknown): Dice mean {_fmt(a['dice_mean'])}, "
            f"IoU mean {_fmt(a['iou_mean'])}, Dice pooled {_fmt(a['dice_pooled'])}. "
            "Empty truth and empty prediction count as 1.",
            "",
            f"False-mask rate: {f['n_flagged']} of {f['n_images']} no-tumour images given a mask of at least "
            f"{f['min_area_px']} px = {_fmt(f['rate'])}.",
        ]

    leak = report["leakage"]
    split = meta.get("split", "evaluated")
    lines += ["", f"## Possible leakage: identical images in the training folder and the {split} split", ""]
    if not leak["checked"]:
        lines += [leak["note"] or "Not checked."]
    elif not leak["groups"]:
        lines += [f"None found. {leak['note']}".strip()]
    else:
        lines += [
            f"{leak['n_groups']} groups of byte-identical images span the training folder and the {split} split "
            f"({leak['n_evaluated_images']} {split} images): figures on them may be inflated. {leak['note']}".strip(),
            "",
        ]
        lines += _table(
            (f"{split} images", "training images"),
            ([", ".join(g["evaluated"]), ", ".join(g["train"])] for g in leak["groups"]),
        )

    near = leak.get("near_duplicates")
    lines += ["", f"## Possible leakage: near-duplicates of training images in the {split} split", ""]
    if near is None:
        lines += [leak.get("near_note") or "Not checked."]
    elif not near:
        lines += [f"None found. {leak.get('near_note', '')}".strip()]
    else:
        shown = near[:_NEAR_ROWS]
        note = leak.get("near_note", "")
        lines += [
            f"{len(near)} {split} images have a near-duplicate in the training folder (the same slice re-encoded, or "
            f"a neighbouring slice of one series): figures on them may be inflated. {note}".strip(),
            "",
        ]
        lines += _table(
            (f"{split} image", "closest training images", "bits apart"),
            ([row["evaluated"], ", ".join(row["train"][:3]) + (" ..." if len(row["train"]) > 3 else ""),
              row["distance"]] for row in shown),
        )  # fmt: skip
        if len(near) > len(shown):
            lines += ["", f"... and {len(near) - len(shown)} more (every one in `report.json`)."]

    lines += ["", "## Conventions", ""]
    lines += [f"- **{key}**: {text}" for key, text in report["conventions"].items()]
    lines += ["", "Per-image numbers: `per_image.csv`. Every number above: `report.json`.", ""]
    return "\n".join(lines)


def write_report(report: Report, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``report.json``, ``report.md``, ``confusion_matrix.png`` and ``per_image.csv`` into a folder.

    Args:
        report: the report (:func:`~brain_mtl.evaluation.build.build_report`).
        out_dir: destination folder (created if missing).

    Returns:
        (path of report.json, path of report.md).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    content = report.to_dict()
    per_image = content.pop("per_image", [])
    body = dict(content)
    body["per_image"] = "per_image.csv"
    json_path, md_path = out / "report.json", out / "report.md"
    atomic_write_text(json_path, json_dumps(body, indent=2) + "\n")
    atomic_write_text(md_path, report_markdown(json_ready(body)))
    cm = content["classification"]["confusion_matrix"]
    image = confusion_matrix_image(np.asarray(cm["counts"]), cm["classes"])
    write_png(out / "confusion_matrix.png", image)
    if per_image:
        with atomic_path(out / "per_image.csv") as partial, open(partial, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(per_image[0]))
            writer.writeheader()
            writer.writerows({k: ("" if v is None else csv_cell(v)) for k, v in row.items()} for row in per_image)
    return json_path, md_path
