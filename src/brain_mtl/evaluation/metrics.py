"""Pure NumPy metrics for the evaluation report.

Per-image counts, pooled and per-image overlap, HD95, classification metrics, calibration, size terciles and
bootstrap intervals.

Nothing here needs torch, so every function can be checked against a hand computation. Conventions (repeated in
``report.md`` and ``docs/evaluation.md``):

* **Pooled** Dice/IoU sum true positives, false positives and false negatives over all pixels of a set of images
  and then take the ratio (the reference notebook's and the BRISC paper's convention). **Per-image** Dice/IoU take
  the ratio in each image and then summarise the per-image values (mean, sd, median).
* **Empty truth and empty prediction**: Dice and IoU are 1 (the prediction is exactly right); this is what makes the
  all-image Dice defined on healthy scans.
* **HD95** is the symmetric 95th-percentile Hausdorff distance between the *boundaries* of the two masks, in pixels
  of the evaluated grid: ``max(P95 d(bA -> bB), P95 d(bB -> bA))`` where ``bX`` are the mask pixels with a
  4-neighbour outside the mask (or on the image edge) and ``d`` the Euclidean distance to the nearest boundary pixel
  of the other mask. Both masks empty: 0. Exactly one mask empty: undefined (NaN); summaries exclude it and report
  how many images were excluded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import cv2
import numpy as np

_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))


class MaskCounts(NamedTuple):
    """Pixel confusion counts of one binary prediction against its ground truth."""

    tp: int
    fp: int
    fn: int
    tn: int


def confusion_counts(pred: np.ndarray, truth: np.ndarray) -> MaskCounts:
    """Count true/false positives/negatives of one binary mask against the ground truth.

    Args:
        pred: (H, W) predicted mask; non-zero / True means tumour.
        truth: (H, W) ground-truth mask, same shape.

    Returns:
        The four pixel counts; they sum to ``H * W``.
    """
    pred = np.asarray(pred).astype(bool)
    truth = np.asarray(truth).astype(bool)
    if pred.shape != truth.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground-truth shape {truth.shape}")
    tp = int(np.count_nonzero(pred & truth))
    fp = int(np.count_nonzero(pred & ~truth))
    fn = int(np.count_nonzero(~pred & truth))
    return MaskCounts(tp, fp, fn, pred.size - tp - fp - fn)


def _ratio(num: np.ndarray, den: np.ndarray, empty: float) -> np.ndarray:
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, float(empty))
    np.divide(num, den, out=out, where=den > 0)
    return out


def dice_score(tp, fp, fn, empty: float = 1.0):
    """Dice = 2 TP / (2 TP + FP + FN), elementwise over arrays of counts.

    Args:
        tp: true-positive counts (scalar or array).
        fp: false-positive counts.
        fn: false-negative counts.
        empty: value when truth and prediction are both empty (denominator 0). Default 1.

    Returns:
        float for scalar input, else an array of the broadcast shape.
    """
    tp = np.asarray(tp)
    out = _ratio(2 * tp, 2 * tp + np.asarray(fp) + np.asarray(fn), empty)
    return float(out) if out.ndim == 0 else out


def iou_score(tp, fp, fn, empty: float = 1.0):
    """IoU (Jaccard) = TP / (TP + FP + FN), elementwise; ``empty`` when both masks are empty."""
    tp = np.asarray(tp)
    out = _ratio(tp, tp + np.asarray(fp) + np.asarray(fn), empty)
    return float(out) if out.ndim == 0 else out


def pixel_accuracy(tp, fp, fn, tn):
    """(TP + TN) / all pixels, elementwise (NaN for a zero-size image)."""
    tp, fp, fn, tn = (np.asarray(v) for v in (tp, fp, fn, tn))
    out = _ratio(tp + tn, tp + fp + fn + tn, np.nan)
    return float(out) if out.ndim == 0 else out


def pooled_dice(tp, fp, fn, axis: int = -1, empty: float = 1.0):
    """Dice of the pixel counts summed over images (``axis``): one ratio for the whole set."""
    return dice_score(np.sum(tp, axis=axis), np.sum(fp, axis=axis), np.sum(fn, axis=axis), empty)


def pooled_iou(tp, fp, fn, axis: int = -1, empty: float = 1.0):
    """IoU of the pixel counts summed over images (``axis``)."""
    return iou_score(np.sum(tp, axis=axis), np.sum(fp, axis=axis), np.sum(fn, axis=axis), empty)


def mask_boundary(mask: np.ndarray) -> np.ndarray:
    """The boundary pixels of a binary mask: mask pixels with a 4-neighbour outside it or on the image edge.

    Args:
        mask: (H, W) binary mask.

    Returns:
        (H, W) bool array; a one-pixel mask is its own boundary.
    """
    m = (np.asarray(mask) > 0).astype(np.uint8)
    eroded = cv2.erode(m, _CROSS, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return (m > 0) & (eroded == 0)


def _distances_to(boundary: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Euclidean distance from each ``at`` pixel to the nearest ``boundary`` pixel (exact: DIST_MASK_PRECISE)."""
    src = np.where(boundary, 0, 1).astype(np.uint8)
    dist = cv2.distanceTransform(src, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return dist[at].astype(np.float64)


def hd95(pred: np.ndarray, truth: np.ndarray, percentile: float = 95.0) -> float:
    """Symmetric 95th-percentile Hausdorff distance between mask boundaries, in pixels.

    ``max(P(d(bP -> bT)), P(d(bT -> bP)))`` with ``P`` the ``percentile`` (linear interpolation, NumPy's default),
    ``bX`` the boundary pixels (:func:`mask_boundary`) and ``d`` the Euclidean distance to the nearest boundary pixel
    of the other mask.

    Args:
        pred: (H, W) predicted binary mask.
        truth: (H, W) ground-truth binary mask.
        percentile: 95 for HD95; 100 gives the classical Hausdorff distance.

    Returns:
        The distance; 0.0 when both masks are empty; NaN when exactly one is empty (undefined).
    """
    pred = np.asarray(pred) > 0
    truth = np.asarray(truth) > 0
    if pred.shape != truth.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground-truth shape {truth.shape}")
    has_pred, has_truth = bool(pred.any()), bool(truth.any())
    if not has_pred and not has_truth:
        return 0.0
    if has_pred != has_truth:
        return float("nan")
    # Crop to the union's bounding box plus a one-pixel margin: distances between pixels inside it do not change,
    # and the margin (outside both masks) keeps the boundary identical to the full-image one.
    rows = np.flatnonzero((pred | truth).any(axis=1))
    cols = np.flatnonzero((pred | truth).any(axis=0))
    r0, r1 = max(rows[0] - 1, 0), rows[-1] + 2
    c0, c1 = max(cols[0] - 1, 0), cols[-1] + 2
    pred, truth = pred[r0:r1, c0:c1], truth[r0:r1, c0:c1]
    b_pred, b_truth = mask_boundary(pred), mask_boundary(truth)
    d_pred_to_truth = _distances_to(b_truth, b_pred)
    d_truth_to_pred = _distances_to(b_pred, b_truth)
    return float(max(np.percentile(d_pred_to_truth, percentile), np.percentile(d_truth_to_pred, percentile)))


def all_image_dice(tp, fp, fn) -> float:
    """Mean per-image Dice over every image with a known mask, healthy scans included.

    An image whose truth and prediction are both empty scores 1; a healthy scan given any mask scores 0.
    """
    values = dice_score(np.atleast_1d(tp), np.atleast_1d(fp), np.atleast_1d(fn), empty=1.0)
    return float(np.mean(values)) if values.size else float("nan")


def false_mask_rate(pred_areas, min_area: int = 1) -> tuple[float, int, int]:
    """Share of (healthy) images whose predicted mask has at least ``min_area`` pixels.

    Args:
        pred_areas: predicted mask areas in pixels of the images that have no tumour.
        min_area: smallest area that counts as a mask (smaller specks are ignored).

    Returns:
        (rate, number flagged, number of images); rate is NaN when there is no image.
    """
    areas = np.asarray(pred_areas).reshape(-1)
    flagged = int(np.count_nonzero(areas >= min_area))
    return (flagged / areas.size if areas.size else float("nan")), flagged, int(areas.size)


def summarize(values) -> dict[str, float | int]:
    """Mean, sample sd (ddof=1), median, min and max of the finite values, and how many there were.

    NaN values (e.g. undefined HD95) are left out; ``n`` counts the values used and ``n_excluded`` the NaNs.
    """
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    finite = values[np.isfinite(values)]
    n = int(finite.size)
    nan = float("nan")
    return {
        "mean": float(finite.mean()) if n else nan,
        "sd": float(finite.std(ddof=1)) if n > 1 else nan,
        "median": float(np.median(finite)) if n else nan,
        "min": float(finite.min()) if n else nan,
        "max": float(finite.max()) if n else nan,
        "n": n,
        "n_excluded": int(values.size - n),
    }


# --------------------------------------------------------------------------------------------- classification


def confusion_matrix(labels, preds, num_classes: int):
    """Confusion counts, rows = true class, columns = predicted class.

    Args:
        labels: (..., N) true class indices.
        preds: (..., N) predicted class indices, same shape.
        num_classes: C.

    Returns:
        (..., C, C) int64 counts (leading dimensions kept, e.g. bootstrap resamples).
    """
    labels = np.asarray(labels, dtype=np.int64)
    preds = np.asarray(preds, dtype=np.int64)
    if labels.shape != preds.shape:
        raise ValueError(f"labels shape {labels.shape} differs from predictions shape {preds.shape}")
    both = np.concatenate([labels.reshape(-1), preds.reshape(-1)])
    if both.size and (both.min() < 0 or both.max() >= num_classes):
        raise ValueError(f"class indices must lie in [0, {num_classes})")
    lead = labels.shape[:-1]
    groups = int(np.prod(lead)) if lead else 1
    flat = labels.reshape(groups, -1) * num_classes + preds.reshape(groups, -1)
    flat = flat + (np.arange(groups)[:, None] * num_classes * num_classes)
    counts = np.bincount(flat.reshape(-1), minlength=groups * num_classes * num_classes)
    return counts.reshape(*lead, num_classes, num_classes)


def precision_recall_f1(matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class precision, recall and F1 from a (..., C, C) confusion matrix; an undefined ratio (0/0) is 0."""
    matrix = np.asarray(matrix, dtype=np.float64)
    tp = np.diagonal(matrix, axis1=-2, axis2=-1)
    predicted = matrix.sum(axis=-2)
    support = matrix.sum(axis=-1)
    precision = _ratio(tp, predicted, 0.0)
    recall = _ratio(tp, support, 0.0)
    f1 = _ratio(2 * precision * recall, precision + recall, 0.0)
    return precision, recall, f1


def macro_f1(matrix) -> np.ndarray | float:
    """Mean F1 over the classes present in the ground truth (support > 0), from a (..., C, C) matrix."""
    matrix = np.asarray(matrix)
    _, _, f1 = precision_recall_f1(matrix)
    present = matrix.sum(axis=-1) > 0
    out = _ratio((f1 * present).sum(axis=-1), present.sum(axis=-1), np.nan)
    return float(out) if out.ndim == 0 else out


def expected_calibration_error(probs, labels, n_bins: int = 15) -> float:
    """Expected calibration error of the top-class confidence, with equal-width bins.

    ``ECE = sum_b |B_b| / N * |accuracy(B_b) - mean confidence(B_b)|`` over bins ``((b-1)/M, b/M]`` (Guo et al.,
    2017); a confidence of exactly 0 goes to the first bin.

    Args:
        probs: (N, C) class probabilities (rows sum to 1).
        labels: (N,) true class indices.
        n_bins: M, the number of bins (15 by default).

    Returns:
        ECE in [0, 1]; NaN for N = 0.
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if probs.shape[0] == 0:
        return float("nan")
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    bins = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    conf_sum = np.bincount(bins, weights=confidence, minlength=n_bins)
    acc_sum = np.bincount(bins, weights=correct, minlength=n_bins)
    return float(np.abs(acc_sum - conf_sum).sum() / probs.shape[0])


def classification_summary(probs, labels, class_names: Sequence[str]) -> dict:
    """Accuracy, macro precision/recall/F1, per-class metrics, confusion matrix and ECE of class probabilities.

    Args:
        probs: (N, C) class probabilities.
        labels: (N,) true class indices.
        class_names: C names in index order.

    Returns:
        A JSON-ready dict; macro averages are over the classes present in the ground truth, and a per-class ratio
        that is 0/0 (a class never predicted, or absent) is reported as 0.
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    num_classes = len(class_names)
    preds = probs.argmax(axis=1) if probs.size else np.zeros(0, dtype=np.int64)
    matrix = confusion_matrix(labels, preds, num_classes)
    precision, recall, f1 = precision_recall_f1(matrix)
    support = matrix.sum(axis=1)
    present = support > 0
    n = int(labels.size)

    def macro(values: np.ndarray) -> float:
        return float(values[present].mean()) if present.any() else float("nan")

    return {
        "n_images": n,
        "accuracy": float(np.trace(matrix) / n) if n else float("nan"),
        "macro_precision": macro(precision),
        "macro_recall": macro(recall),
        "macro_f1": macro(f1),
        "ece": expected_calibration_error(probs, labels, 15),
        "ece_bins": 15,
        "per_class": {
            name: {
                "precision": float(precision[k]),
                "recall": float(recall[k]),
                "f1": float(f1[k]),
                "support": int(support[k]),
            }
            for k, name in enumerate(class_names)
        },
        "confusion_matrix": {
            "rows": "true class",
            "columns": "predicted class",
            "classes": list(class_names),
            "counts": matrix.tolist(),
        },
    }


# --------------------------------------------------------------------------------------------- groups and intervals


def size_terciles(areas) -> tuple[tuple[float, float], np.ndarray]:
    """Split images into three groups by tumour size.

    Args:
        areas: (N,) ground-truth tumour areas (pixels or share of the image).

    Returns:
        ``((q1, q2), group)``: the 1/3 and 2/3 quantiles (linear interpolation) and an (N,) int array with
        0 = small (area <= q1), 1 = medium (q1 < area <= q2), 2 = large (area > q2). Ties make groups unequal.
    """
    areas = np.asarray(areas, dtype=np.float64).reshape(-1)
    if areas.size == 0:
        return (float("nan"), float("nan")), np.zeros(0, dtype=np.int64)
    q1, q2 = np.quantile(areas, [1 / 3, 2 / 3])
    group = np.where(areas <= q1, 0, np.where(areas <= q2, 1, 2)).astype(np.int64)
    return (float(q1), float(q2)), group


def bootstrap_ci(
    statistic: Callable[..., np.ndarray],
    arrays: Sequence[np.ndarray],
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of a statistic, resampling images with replacement.

    Args:
        statistic: called with each array resampled along axis 0 and stacked into shape (R, N, ...); it must reduce
            the image axis (axis 1) and return one value per resample, shape (R,). E.g.
            ``lambda x: x.mean(axis=1)`` or ``lambda tp, fp, fn: pooled_dice(tp, fp, fn, axis=1)``.
        arrays: per-image arrays with the same length N along axis 0 (resampled with the same indices).
        n_resamples: R, number of bootstrap resamples.
        seed: seed of the NumPy generator (same seed, same interval).
        confidence: 0.95 gives the 2.5th and 97.5th percentiles.

    Returns:
        (low, high); NaN when N = 0 or ``n_resamples`` = 0. Resamples whose statistic is NaN are ignored.
    """
    arrays = [np.asarray(a) for a in arrays]
    n = arrays[0].shape[0] if arrays else 0
    if any(a.shape[0] != n for a in arrays):
        raise ValueError("all arrays must have the same number of images")
    if n == 0 or n_resamples <= 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    # Resample in chunks so that R x N index arrays stay a few MB even for large test sets.
    chunk = max(1, min(n_resamples, 2_000_000 // n))
    stats = []
    done = 0
    while done < n_resamples:
        size = min(chunk, n_resamples - done)
        idx = rng.integers(0, n, size=(size, n))
        stats.append(np.asarray(statistic(*(a[idx] for a in arrays)), dtype=np.float64).reshape(size))
        done += size
    values = np.concatenate(stats)
    if not np.isfinite(values).any():
        return float("nan"), float("nan")
    alpha = (1 - confidence) / 2
    low, high = np.nanpercentile(values, [100 * alpha, 100 * (1 - alpha)])
    return float(low), float(high)
