"""Compute the evaluation report from per-image records.

Classification, mask figures with and without the gate, bootstrap intervals, leakage and meta: NumPy and
torchmetrics, no model run.
"""

from __future__ import annotations

import datetime as _dt
import math
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from brain_mtl import __version__
from brain_mtl.classes import CLASS_NAMES, NO_TUMOR
from brain_mtl.evaluation import metrics as M
from brain_mtl.evaluation import statistics as S
from brain_mtl.evaluation.calibration import undo_temperature
from brain_mtl.evaluation.records import ImageRecords
from brain_mtl.evaluation.report import (
    CONVENTIONS,
    AllImages,
    Classification,
    FalseMasks,
    Headline,
    Leakage,
    Report,
    ReportMeta,
    SegmentationFigures,
    TumourSegmentation,
    Variant,
    forward_convention,
)
from brain_mtl.models.postprocess import gate_veto

if TYPE_CHECKING:
    from brain_mtl.models.tta import TTAMode

__all__ = ["build_report"]


def _gated_counts_and_hd95(records: ImageRecords, veto: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts, HD95 and predicted area after emptying the vetoed predictions (no model run needed)."""
    total = records.heights * records.widths
    counts = records.counts.copy()
    zeros = np.zeros(int(veto.sum()), np.int64)
    counts[veto] = np.stack([zeros, zeros, records.truth_area[veto], total[veto] - records.truth_area[veto]], axis=1)
    hd = records.hd95.copy()
    hd[veto] = np.where(records.truth_area[veto] > 0, np.nan, 0.0)
    hd[veto & ~records.has_mask] = np.nan
    area = np.where(veto, 0, records.pred_area)
    return counts, hd, area


def _figures(counts: np.ndarray, hd: np.ndarray, truth_area: np.ndarray, pred_area: np.ndarray) -> SegmentationFigures:
    tp, fp, fn, tn = counts.T if counts.size else (np.zeros(0),) * 4
    n = len(tp)
    nan = float("nan")
    return SegmentationFigures(
        n_images=n,
        dice_pooled=float(M.pooled_dice(tp, fp, fn)) if n else nan,
        iou_pooled=float(M.pooled_iou(tp, fp, fn)) if n else nan,
        pixel_accuracy_pooled=float(M.pixel_accuracy(tp.sum(), fp.sum(), fn.sum(), tn.sum())) if n else nan,
        dice_per_image=S.summary_statistics(M.dice_score(tp, fp, fn) if n else np.zeros(0)),
        iou_per_image=S.summary_statistics(M.iou_score(tp, fp, fn) if n else np.zeros(0)),
        pixel_accuracy_per_image_mean=float(np.mean(M.pixel_accuracy(tp, fp, fn, tn))) if n else nan,
        hd95_px={
            **S.summary_statistics(hd),
            "n_both_empty": int(((truth_area == 0) & (pred_area == 0)).sum()),
            "n_undefined_one_empty": int(((truth_area == 0) != (pred_area == 0)).sum()),
        },
        n_empty_prediction=int((pred_area == 0).sum()),
    )


def _nanmean_rows(x: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(x, axis=1)


def _variant(
    records: ImageRecords, veto: np.ndarray | None, class_names: Sequence[str], no_tumor: int, min_area: int, boot: dict
) -> Variant:
    """One section ('ungated' when veto is None, else 'gated') of the report."""
    if veto is None:
        counts, hd, pred_area = records.counts, records.hd95, records.pred_area
    else:
        counts, hd, pred_area = _gated_counts_and_hd95(records, veto)
    labels, known = records.labels, records.has_mask
    tumour = known & (labels != no_tumor)
    healthy = labels == no_tumor
    image_area = (records.heights * records.widths).astype(np.float64)
    share = np.divide(records.truth_area, image_area, out=np.zeros(len(records)), where=image_area > 0)

    def block(sel: np.ndarray) -> SegmentationFigures:
        return _figures(counts[sel], hd[sel], records.truth_area[sel], pred_area[sel])

    (q1, q2), group = S.size_terciles(share[tumour])
    tercile = np.full(len(records), -1)
    tercile[tumour] = group
    seg = TumourSegmentation(
        overall=block(tumour),
        by_class={name: block(tumour & (labels == k)) for k, name in enumerate(class_names) if k != no_tumor},
        by_size={
            "edges_share_of_image": [q1, q2],
            **{label: block(tercile == g) for g, label in enumerate(("small", "medium", "large"))},
        },
    )
    tp, fp, fn, _ = counts.T if counts.size else (np.zeros(0),) * 4
    all_dice = M.dice_score(tp[known], fp[known], fn[known]) if known.any() else np.zeros(0)
    all_iou = M.iou_score(tp[known], fp[known], fn[known]) if known.any() else np.zeros(0)
    rate, flagged, n_healthy = M.false_mask_rate(pred_area[healthy], min_area)
    all_images = AllImages(
        n_images=int(known.sum()),
        n_no_tumour=int((known & healthy).sum()),
        n_tumour=int(tumour.sum()),
        n_excluded_unknown_mask=int((~known).sum()),
        dice_mean=float(all_dice.mean()) if all_dice.size else float("nan"),
        iou_mean=float(all_iou.mean()) if all_iou.size else float("nan"),
        dice_pooled=float(M.pooled_dice(tp[known], fp[known], fn[known])) if known.any() else float("nan"),
    )
    t_tp, t_fp, t_fn = tp[tumour], fp[tumour], fn[tumour]
    n_t = int(tumour.sum())
    pop_t = "tumour images with a ground-truth mask"

    def head(name: str, value: float, stat, arrays, n: int, over: str) -> Headline:
        low, high = S.bootstrap_ci(stat, arrays, **boot)
        return Headline(name, value, [low, high], n, over)

    o = seg.overall
    per_image = M.dice_score(t_tp, t_fp, t_fn) if n_t else np.zeros(0)
    per_image_iou = M.iou_score(t_tp, t_fp, t_fn) if n_t else np.zeros(0)
    headline = {
        "dice_tumour_pooled": head(
            "Dice, pooled",
            o.dice_pooled,
            lambda a, b, c: M.pooled_dice(a, b, c, axis=1),
            [t_tp, t_fp, t_fn],
            n_t,
            pop_t,
        ),
        "dice_tumour_mean": head(
            "Dice, per-image mean", o.dice_per_image["mean"], lambda d: d.mean(axis=1), [per_image], n_t, pop_t
        ),
        "iou_tumour_pooled": head(
            "IoU, pooled", o.iou_pooled, lambda a, b, c: M.pooled_iou(a, b, c, axis=1), [t_tp, t_fp, t_fn], n_t, pop_t
        ),
        "iou_tumour_mean": head(
            "IoU, per-image mean", o.iou_per_image["mean"], lambda d: d.mean(axis=1), [per_image_iou], n_t, pop_t
        ),
        "hd95_tumour_mean": head(
            "HD95 (px), mean where defined",
            o.hd95_px["mean"],
            _nanmean_rows,
            [hd[tumour]],
            int(o.hd95_px["n"]),
            pop_t + ", HD95 defined",
        ),
        "dice_all_images": head(
            "Dice, all images (mean)",
            all_images.dice_mean,
            lambda d: d.mean(axis=1),
            [all_dice],
            all_images.n_images,
            "all images with a known mask, no-tumour included",
        ),
        "false_mask_rate": head(
            f"False-mask rate (>= {min_area} px)",
            rate,
            lambda a: (a >= min_area).mean(axis=1),
            [pred_area[healthy]],
            n_healthy,
            "no-tumour images",
        ),
    }
    return Variant(
        headline=headline,
        tumour_segmentation=seg,
        all_images=all_images,
        false_masks=FalseMasks(rate, flagged, n_healthy, int(min_area)),
        n_masks_emptied_by_gate=None if veto is None else int((veto & (records.pred_area > 0)).sum()),
    )


def _classification(
    records: ImageRecords, class_names: Sequence[str], boot: dict, temperature: float = 1.0
) -> Classification:
    summary = M.classification_summary(records.probs, records.labels, class_names)
    result = Classification(**summary)
    if temperature != 1.0:
        before = undo_temperature(records.probs, temperature)
        result.calibration = {
            "temperature": temperature,
            "before": {
                "ece": M.expected_calibration_error(before, records.labels, result.ece_bins),
                "nll": M.negative_log_likelihood(before, records.labels),
            },
            "after": {"ece": result.ece, "nll": result.nll},
        }
    n, k = len(records), len(class_names)
    labels = records.labels
    preds = records.probs.argmax(axis=1) if n else np.zeros(0, dtype=np.int64)
    acc_ci = S.bootstrap_ci(lambda y, p: (y == p).mean(axis=1), (labels, preds), **boot)
    f1_ci = S.bootstrap_ci(
        lambda y, p: np.array([M.macro_f1(a, b, k) for a, b in zip(y, p, strict=True)]), (labels, preds), **boot
    )
    result.headline = {
        "accuracy": Headline("Accuracy", result.accuracy, list(acc_ci), n, "all images"),
        "macro_f1": Headline("Macro F1", result.macro_f1, list(f1_ci), n, "all images"),
    }
    return result


def _per_image_rows(records: ImageRecords, veto: np.ndarray, class_names: Sequence[str]) -> list[dict[str, Any]]:
    tp, fp, fn, _ = records.counts.T if len(records) else (np.zeros(0),) * 4
    dice = M.dice_score(tp, fp, fn) if len(records) else np.zeros(0)
    pred_labels = records.probs.argmax(axis=1) if len(records) else np.zeros(0, dtype=np.int64)
    rows = []
    for i in range(len(records)):
        known = bool(records.has_mask[i])
        rows.append(
            {
                "path": records.paths[i],
                "label": class_names[int(records.labels[i])],
                "predicted": class_names[int(pred_labels[i])],
                **{f"p_{name}": round(float(records.probs[i, k]), 6) for k, name in enumerate(class_names)},
                "has_mask": known,
                "truth_area_px": int(records.truth_area[i]) if known else None,
                "pred_area_px": int(records.pred_area[i]),
                "dice": float(dice[i]) if known else None,
                "hd95_px": float(records.hd95[i]) if known and math.isfinite(records.hd95[i]) else None,
                "gate_empties_mask": bool(veto[i]) and int(records.pred_area[i]) > 0,
            }
        )
    return rows


def build_report(
    records: ImageRecords,
    *,
    class_names: Sequence[str] = CLASS_NAMES,
    no_tumor: int = NO_TUMOR,
    mask_gate: bool = True,
    gate_min_area: int = 0,
    false_mask_min_area: int = 10,
    bootstrap: int = 1000,
    seed: int = 0,
    mask_threshold: float | None = None,
    duplicates: list[dict[str, list[str]]] | None = None,
    duplicates_note: str | None = None,
    near_duplicates: list[dict[str, Any]] | None = None,
    near_duplicates_note: str | None = None,
    meta: dict[str, Any] | None = None,
    tta: TTAMode = "none",
    class_temperature: float = 1.0,
) -> Report:
    """Compute every figure of the report from per-image records.

    Args:
        records: per-image numbers (gathered from the test steps, or :meth:`ImageRecords.from_masks`).
        class_names: class names in index order.
        no_tumor: index of the healthy class.
        mask_gate: also compute the 'gated' section (:func:`brain_mtl.models.postprocess.gate_veto`: masks emptied when
            the class head says no tumour, or when smaller than ``gate_min_area``).
        gate_min_area: the gate also empties predicted masks smaller than this many pixels (0: class veto only).
        false_mask_min_area: smallest predicted area (pixels) that counts as a mask on a no-tumour image.
        bootstrap: number of bootstrap resamples for the intervals (0: no intervals).
        seed: seed of the bootstrap.
        mask_threshold: the probability threshold used for the masks (recorded only).
        duplicates: groups of identical images, ``{"train": [...], "evaluated": [...]}`` (from
            :mod:`brain_mtl.evaluation.leakage`), or None when not checked.
        duplicates_note: why duplicates were not checked, or how.
        near_duplicates: evaluated images with a near-duplicate training image, ``{"evaluated": path, "train":
            [...], "distance": bits}`` (:func:`brain_mtl.evaluation.leakage.index_near_duplicates`), or None.
        near_duplicates_note: why near-duplicates were not checked, or how.
        meta: extra facts to record (checkpoint path, split, data root, precision, ...).
        tta: the test-time augmentation the records were measured with (recorded in ``meta.tta`` and in the
            ``forward`` convention).
        class_temperature: the temperature the class probabilities were scaled with (a calibrated model file);
            the report then shows the ECE and NLL without it beside those with it.

    Returns:
        The :class:`Report`.
    """
    n = len(records)
    labels = records.labels
    boot = {"n_resamples": bootstrap, "seed": seed}
    classification = _classification(records, class_names, boot, class_temperature)
    ungated = _variant(records, None, class_names, no_tumor, false_mask_min_area, boot)
    veto = gate_veto(
        torch.as_tensor(records.probs.reshape(n, -1)), torch.as_tensor(records.pred_area), gate_min_area, no_tumor
    ).numpy()
    gated = _variant(records, veto, class_names, no_tumor, false_mask_min_area, boot) if mask_gate else None

    flat = {key: h.value for key, h in classification.headline.items()}
    flat["ece"] = classification.ece
    flat.update({key: h.value for key, h in ungated.headline.items()})
    if gated is not None:
        flat.update({f"gated/{key}": h.value for key, h in gated.headline.items()})
    sizes = sorted({(int(h), int(w)) for h, w in zip(records.heights, records.widths, strict=True)})
    report_meta = ReportMeta(
        created_utc=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        brain_mtl_version=__version__,
        n_images=n,
        n_images_with_mask=int(records.has_mask.sum()),
        n_tumour_images_with_mask=int((records.has_mask & (labels != no_tumor)).sum()),
        n_tumour_images_without_mask=int(((labels != no_tumor) & ~records.has_mask).sum()),
        n_no_tumour_images=int((labels == no_tumor).sum()),
        n_images_per_class={name: int((labels == k).sum()) for k, name in enumerate(class_names)},
        evaluated_grid_sizes=[f"{h}x{w}" for h, w in sizes[:10]] + (["..."] if len(sizes) > 10 else []),
        mask_threshold=mask_threshold,
        tta=tta,
        mask_gate=bool(mask_gate),
        gate_min_area_px=int(gate_min_area),
        false_mask_min_area_px=int(false_mask_min_area),
        bootstrap_resamples=int(bootstrap),
        bootstrap_seed=int(seed),
        class_names=list(class_names),
        extra=dict(meta or {}),
    )
    leakage = Leakage(
        checked=duplicates is not None,
        note=duplicates_note or "",
        n_groups=len(duplicates) if duplicates is not None else None,
        n_evaluated_images=sum(len(g["evaluated"]) for g in duplicates) if duplicates is not None else None,
        groups=duplicates if duplicates is not None else [],
        near_duplicates=near_duplicates,
        near_note=near_duplicates_note or "",
    )
    return Report(
        meta=report_meta,
        conventions={**CONVENTIONS, "forward": forward_convention(tta)},
        headline=flat,
        classification=classification,
        ungated=ungated,
        gated=gated,
        leakage=leakage,
        per_image=_per_image_rows(records, veto, class_names),
    )
