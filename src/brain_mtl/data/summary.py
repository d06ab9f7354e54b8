"""A summary of an indexed dataset: counts, image sizes, mask areas, duplicates; and its text rendering."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from brain_mtl.classes import CLASS_NAMES
from brain_mtl.data.duplicates import duplicate_groups
from brain_mtl.data.layout import SPLITS
from brain_mtl.data.near_duplicates import NEAR_DUPLICATE_DISTANCE, near_duplicate_groups
from brain_mtl.data.records import DatasetIndex, ImageRecord


def _by_split(
    groups: list[list[ImageRecord]], name: Callable[[ImageRecord], str]
) -> tuple[dict[str, int], list[list[str]]]:
    """Groups counted per split when they lie in one, and listed (``name`` of each member) when they span splits."""
    within: dict[str, int] = {}
    across: list[list[str]] = []
    for group in groups:
        splits = {r.split for r in group}
        if len(splits) == 1:
            split = splits.pop()
            within[split] = within.get(split, 0) + 1
        else:
            across.append([name(r) for r in group])
    return within, across


def summarize(index: DatasetIndex, near_duplicate_distance: int = NEAR_DUPLICATE_DISTANCE) -> dict[str, Any]:
    """Numbers that describe a dataset (JSON-serialisable).

    Args:
        index: from :func:`~brain_mtl.data.index.index_dataset`.
        near_duplicate_distance: the largest Hamming distance between the perceptual hashes of near-duplicates.

    Returns:
        A dict with ``counts`` (task -> split -> class -> view -> images), ``image_sizes`` (distinct sizes, the
        most common ones, non-square count, smallest/largest side, stored channels), ``mask_area`` (tumour fraction
        statistics per split), ``duplicates`` (groups of byte-identical classification images within each split and
        across splits), ``near_duplicates`` (the same for groups of near-duplicate classification images: counted
        within each split, every group across splits with its paths, and every group under ``all_groups``) and the
        number of errors and warnings.
    """
    counts: dict[str, dict[str, dict[str, dict[str, int]]]] = {}
    for r in index.records:
        task = counts.setdefault(r.task, {})
        split = task.setdefault(r.split, {})
        name = CLASS_NAMES[r.label] if r.label >= 0 else "unknown"
        views = split.setdefault(name, {})
        views[r.view] = views.get(r.view, 0) + 1

    # Sizes and channels of distinct files (segmentation images are copies of classification images).
    unique = {}
    for r in index.records:
        if r.height and r.width:
            unique.setdefault(r.digest or str(r.path), r)
    sizes = Counter((r.width, r.height) for r in unique.values())
    sides = [s for r in unique.values() for s in (r.width, r.height)]
    image_sizes = {
        "distinct": len(sizes),
        "most_common": [{"width": w, "height": h, "images": n} for (w, h), n in sizes.most_common(8)],
        "non_square": sum(n for (w, h), n in sizes.items() if w != h),
        "min_side": min(sides) if sides else None,
        "max_side": max(sides) if sides else None,
        "stored_channels": {str(k): v for k, v in sorted(Counter(r.channels for r in unique.values()).items())},
    }

    mask_area: dict[str, dict[str, float | int]] = {}
    for split in SPLITS:
        areas = np.array([r.mask_area for r in index.segmentation(split) if r.mask_area is not None])
        if areas.size:
            mask_area[split] = {
                "masks": int(areas.size),
                "min_percent": float(areas.min() * 100),
                "median_percent": float(np.median(areas) * 100),
                "mean_percent": float(areas.mean() * 100),
                "max_percent": float(areas.max() * 100),
                "empty": int((areas == 0).sum()),
                "under_0.3_percent": int((areas < 0.003).sum()),
            }

    groups = duplicate_groups(index, "classification")
    within, across = _by_split(groups, lambda r: str(r.path))
    duplicates = {
        "groups": len(groups),
        "images_in_groups": sum(len(g) for g in groups),
        "within_split": within,
        "across_splits": across,
    }
    near = near_duplicate_groups(index, near_duplicate_distance)
    near_within, near_across = _by_split(near, lambda r: f"{r.path} ({r.split})")
    near_duplicates = {
        "max_distance": near_duplicate_distance,
        "hashed_images": sum(r.phash is not None for r in index.records if r.task == "classification"),
        "groups": len(near),
        "images_in_groups": sum(len(g) for g in near),
        "largest_group": max((len(g) for g in near), default=0),
        "within_split": near_within,
        "across_splits": near_across,
        "all_groups": [[str(r.path) for r in group] for group in near],
    }
    return {
        "root": str(index.root),
        "counts": counts,
        "image_sizes": image_sizes,
        "mask_area": mask_area,
        "duplicates": duplicates,
        "near_duplicates": near_duplicates,
        "has_val_split": index.has_val_split,
        "errors": len(index.errors),
        "warnings": len(index.warnings),
    }


def format_report(index: DatasetIndex, summary: dict[str, Any] | None = None, max_listed: int = 200) -> str:
    """Render the summary and every problem as plain text for a terminal.

    Args:
        index: the indexed dataset.
        summary: from :func:`summarize` (computed when omitted).
        max_listed: at most this many warnings are listed (errors are always all listed).

    Returns:
        The report as one string of lines.
    """
    summary = summary or summarize(index)
    lines = [f"Dataset: {summary['root']}"]
    for task in ("classification", "segmentation"):
        per_split = summary["counts"].get(task, {})
        if not per_split:
            continue
        lines.append(f"\n{task} images (class: total [ax/co/sa/other views])")
        for split in SPLITS:
            classes = per_split.get(split)
            if not classes:
                continue
            total = sum(sum(v.values()) for v in classes.values())
            lines.append(f"  {split}: {total}")
            for name in (*CLASS_NAMES, "unknown"):
                views = classes.get(name)
                if not views:
                    continue
                other = sum(n for v, n in views.items() if v not in ("ax", "co", "sa"))
                lines.append(
                    f"    {name:<11} {sum(views.values()):>6}  [{views.get('ax', 0)}/{views.get('co', 0)}/"
                    f"{views.get('sa', 0)}/{other}]"
                )
    if not summary["has_val_split"]:
        lines.append("  (no val split folder: training carves a stratified, seeded fraction of train)")

    sizes = summary["image_sizes"]
    if sizes["distinct"]:
        common = ", ".join(f"{s['width']}x{s['height']} ({s['images']})" for s in sizes["most_common"])
        channels = ", ".join(f"{k}-channel: {v}" for k, v in sizes["stored_channels"].items())
        lines += [
            "\nimage sizes (distinct files, width x height)",
            f"  {sizes['distinct']} distinct sizes; most common: {common}",
            f"  non-square: {sizes['non_square']}; sides {sizes['min_side']}-{sizes['max_side']} px; {channels}",
        ]
    if summary["mask_area"]:
        lines.append("\ntumour area in masks (% of the image)")
        for split, s in summary["mask_area"].items():
            lines.append(
                f"  {split}: {s['masks']} masks, min {s['min_percent']:.3f}, median {s['median_percent']:.2f}, "
                f"mean {s['mean_percent']:.2f}, max {s['max_percent']:.2f}; empty {s['empty']}, "
                f"under 0.3%: {s['under_0.3_percent']}"
            )
    d = summary["duplicates"]
    lines.append("\nduplicates (byte-identical classification images)")
    within = ", ".join(f"{k}: {v}" for k, v in d["within_split"].items()) or "none"
    lines.append(
        f"  {d['groups']} groups ({d['images_in_groups']} images); within one split: {within}; "
        f"across splits: {len(d['across_splits'])}"
    )
    for group in d["across_splits"][:max_listed]:
        lines.append("    " + " == ".join(group))
    n = summary["near_duplicates"]
    lines.append(
        f"\nnear-duplicates (classification images whose perceptual hashes differ in <= {n['max_distance']} of 64 "
        "bits: the same slice re-encoded, or a neighbouring slice of one series)"
    )
    if not n["hashed_images"]:
        lines.append("  not computed: the images were not decoded")
    else:
        within = ", ".join(f"{k}: {v}" for k, v in n["within_split"].items()) or "none"
        lines.append(
            f"  {n['groups']} groups ({n['images_in_groups']} images, the largest {n['largest_group']}); "
            f"within one split: {within}; across splits: {len(n['across_splits'])}"
        )
        for group in n["across_splits"][:max_listed]:
            lines.append("    " + " ~ ".join(group))
        if len(n["across_splits"]) > max_listed:
            lines.append(f"    ... and {len(n['across_splits']) - max_listed} more groups")

    errors, warnings = index.errors, index.warnings
    lines.append(f"\n{len(errors)} error(s), {len(warnings)} warning(s)")
    for p in errors:
        lines.append(f"  ERROR   {p}")
    for p in warnings[:max_listed]:
        lines.append(f"  warning {p}")
    if len(warnings) > max_listed:
        lines.append(f"  ... and {len(warnings) - max_listed} more warnings")
    return "\n".join(lines)
