"""The evaluation report's metrics: per-image statistics and their summaries, once.

- Per-image statistics that the test step yields for the evaluation report (:func:`image_stats`), their pooled and
  per-image summaries, HD95 and the false-mask rate.
- Classification figures of the report through torchmetrics' functional forms of the metrics the task logs
  (:mod:`brain_mtl.task.metrics`: the torchmetrics objects of training-time monitoring).

Conventions (repeated in ``report.md`` and ``docs/evaluation.md``):

* **Pooled** Dice/IoU sum true positives, false positives and false negatives over all pixels of a set of images
  and then take the ratio (the reference notebook's and the BRISC paper's convention). **Per-image** Dice/IoU take
  the ratio in each image and then summarise the per-image values (mean, sd, median).
* **Empty truth and empty prediction**: Dice and IoU are 1 (the prediction is exactly right); this is what makes the
  all-image Dice defined on healthy scans.
* **HD95** is the symmetric 95th-percentile Hausdorff distance between the *boundaries* of the two masks, in pixels
  of the evaluated grid: ``max(P95 d(bA -> bB), P95 d(bB -> bA))`` where ``bX`` are the mask pixels with a
  4-neighbour outside the mask (or on the image edge) and ``d`` the Euclidean distance to the nearest boundary pixel
  of the other mask. Both masks empty: 0. Exactly one mask empty: undefined (NaN); summaries exclude it and report
  how many images were excluded. One small implementation (OpenCV's exact distance transform), checked against a
  brute-force computation in the tests.
* **Bootstrap** (:mod:`brain_mtl.evaluation.statistics`): percentile intervals over images resampled with
  replacement, seeded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import cv2
import numpy as np
import torch
import torchmetrics.functional.classification as F
from torch import Tensor

from brain_mtl.models.postprocess import binarize

_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))


class MaskCounts(NamedTuple):
    """Pixel confusion counts of one binary prediction against its ground truth."""

    tp: int
    fp: int
    fn: int
    tn: int


def confusion_counts(pred: np.ndarray, truth: np.ndarray) -> MaskCounts:
    """Pixel counts of one binary mask against the ground truth (torchmetrics' ``binary_stat_scores``).

    Args:
        pred: (H, W) predicted mask; non-zero / True means tumour.
        truth: (H, W) ground-truth mask, same shape.

    Returns:
        The four pixel counts; they sum to ``H * W``.
    """
    pred_t = torch.as_tensor(np.asarray(pred) != 0).long()
    truth_t = torch.as_tensor(np.asarray(truth) != 0).long()
    if pred_t.shape != truth_t.shape:
        raise ValueError(
            f"prediction shape {tuple(pred_t.shape)} differs from ground-truth shape {tuple(truth_t.shape)}"
        )
    tp, fp, tn, fn, _ = (int(v) for v in F.binary_stat_scores(pred_t, truth_t, validate_args=False))
    return MaskCounts(tp, fp, fn, tn)


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


# --------------------------------------------------------------------------------------------- per image


class ImageStats(NamedTuple):
    """What the test step keeps of each image (B images, K classes): numbers only, no masks.

    Attributes:
        class_probs: (B, K) class probabilities.
        counts: (B, 4) pixel counts tp, fp, fn, tn of the predicted mask against the truth (network grid).
        truth_area: (B,) ground-truth mask pixels (0 where the mask is unknown).
        pred_area: (B,) predicted mask pixels.
        hd95: (B,) HD95 in pixels (NaN where undefined or the mask is unknown; NaN for all when not computed).
        height: (B,) height of the evaluated grid.
        width: (B,) width of the evaluated grid.
    """

    class_probs: Tensor
    counts: Tensor
    truth_area: Tensor
    pred_area: Tensor
    hd95: Tensor
    height: Tensor
    width: Tensor


def image_stats(
    mask_probs: Tensor,
    class_probs: Tensor,
    truth: Tensor,
    has_mask: Tensor,
    threshold: float = 0.5,
    with_hd95: bool = True,
) -> ImageStats:
    """Per-image statistics of a batch, on the CPU.

    Args:
        mask_probs: (B, 1, H, W) tumour probabilities.
        class_probs: (B, K) class probabilities.
        truth: (B, 1, H, W) ground-truth masks in {0, 1} (anything where ``has_mask`` is False).
        has_mask: (B,) whether the ground truth is known.
        threshold: a pixel is tumour when its probability is strictly above this.
        with_hd95: compute HD95 (a distance transform per image).
    """
    if mask_probs.shape[-2:] != truth.shape[-2:]:
        raise ValueError(
            f"the mask probabilities are {tuple(mask_probs.shape[-2:])} but the ground-truth masks are "
            f"{tuple(truth.shape[-2:])}; the evaluation loader must feed images and masks of the size the model "
            "predicts"
        )
    pred = binarize(mask_probs.detach().float(), threshold).flatten(1).cpu()
    target = (truth.detach() > 0.5).flatten(1).cpu()
    known = has_mask.detach().reshape(-1).bool().cpu()
    # torchmetrics' per-sample counts: columns tp, fp, tn, fn, support.
    if pred.shape[0] == 1:  # torchmetrics' samplewise form squeezes a batch of one away
        scores = F.binary_stat_scores(pred[0].long(), target[0].long(), validate_args=False)[None]
    else:
        scores = F.binary_stat_scores(pred.long(), target.long(), multidim_average="samplewise", validate_args=False)
    counts = scores[:, [0, 1, 3, 2]].long()
    height, width = int(mask_probs.shape[-2]), int(mask_probs.shape[-1])
    distances = torch.full((pred.shape[0],), float("nan"), dtype=torch.float64)
    if with_hd95:
        for i in torch.nonzero(known).flatten().tolist():
            p = pred[i].reshape(height, width).numpy()
            t = target[i].reshape(height, width).numpy()
            distances[i] = hd95(p, t)
    batch = pred.shape[0]
    return ImageStats(
        class_probs=class_probs.detach().float().cpu(),
        counts=counts,
        truth_area=torch.where(known, target.sum(dim=1), 0),
        pred_area=pred.sum(dim=1),
        hd95=distances,
        height=torch.full((batch,), height),
        width=torch.full((batch,), width),
    )


# --------------------------------------------------------------------------------------------- classification
# torchmetrics' functional forms of the metrics that the training loop logs, so that the report and TensorBoard
# cannot disagree: macro averages leave out a class that is neither in the truth nor predicted (tp + fp + fn = 0),
# and a 0/0 ratio is 0.


def _class_tensors(labels, preds) -> tuple[Tensor, Tensor]:
    labels_t = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    preds_t = torch.as_tensor(np.asarray(preds, dtype=np.int64))
    if labels_t.shape != preds_t.shape:
        raise ValueError(f"labels shape {tuple(labels_t.shape)} differs from predictions shape {tuple(preds_t.shape)}")
    return labels_t, preds_t


def confusion_matrix(labels, preds, num_classes: int) -> np.ndarray:
    """(C, C) int64 confusion counts, rows = true class, columns = predicted class (torchmetrics).

    Raises:
        ValueError: shapes differ, or a class index outside ``[0, num_classes)``.
    """
    labels_t, preds_t = _class_tensors(labels, preds)
    both = torch.cat([labels_t.reshape(-1), preds_t.reshape(-1)])
    if both.numel() and (int(both.min()) < 0 or int(both.max()) >= num_classes):
        raise ValueError(f"class indices must lie in [0, {num_classes})")
    if labels_t.numel() == 0:
        return np.zeros((num_classes, num_classes), dtype=np.int64)
    matrix = F.multiclass_confusion_matrix(preds_t.reshape(-1), labels_t.reshape(-1), num_classes, validate_args=False)
    return matrix.numpy().astype(np.int64)


def macro_f1(labels, preds, num_classes: int) -> float:
    """Macro F1 as the training loop logs it (``MulticlassF1Score(average="macro")``); NaN without images."""
    labels_t, preds_t = _class_tensors(labels, preds)
    if labels_t.numel() == 0:
        return float("nan")
    return float(F.multiclass_f1_score(preds_t, labels_t, num_classes, average="macro", validate_args=False))


def expected_calibration_error(probs, labels, n_bins: int = 15) -> float:
    """Expected calibration error of the top-class confidence with equal-width bins (torchmetrics, L1 norm).

    ``ECE = sum_b |B_b| / N * |accuracy(B_b) - mean confidence(B_b)|`` (Guo et al., 2017) over ``n_bins`` bins of
    [0, 1]; NaN for N = 0.
    """
    probs_t = torch.as_tensor(np.asarray(probs, dtype=np.float32))
    if probs_t.shape[0] == 0:
        return float("nan")
    labels_t = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    return float(F.multiclass_calibration_error(probs_t, labels_t, probs_t.shape[1], n_bins=n_bins, norm="l1"))


def negative_log_likelihood(probs: np.ndarray | Tensor, labels: np.ndarray | Tensor) -> float:
    """Mean ``-log p(true class)`` of (N, C) class probabilities (NaN for no image)."""
    p = torch.as_tensor(np.asarray(probs, dtype=np.float64)).reshape(len(labels), -1)
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    if y.numel() == 0:
        return float("nan")
    return float(-torch.log(p.gather(1, y[:, None]).clamp_min(1e-12)).mean())


def classification_summary(probs, labels, class_names: Sequence[str]) -> dict:
    """Accuracy, macro precision/recall/F1, per-class metrics, confusion matrix and ECE (torchmetrics).

    The same functions and settings as :func:`classification_metrics`, so the figures equal the logged ones.

    Args:
        probs: (N, C) class probabilities.
        labels: (N,) true class indices.
        class_names: C names in index order.

    Returns:
        A JSON-ready dict.
    """
    probs_t = torch.as_tensor(np.asarray(probs, dtype=np.float32)).reshape(-1, len(class_names))
    labels_t = torch.as_tensor(np.asarray(labels, dtype=np.int64)).reshape(-1)
    k = len(class_names)
    n = int(labels_t.numel())
    nan = float("nan")
    matrix = confusion_matrix(labels_t.numpy(), probs_t.argmax(dim=1).numpy(), k) if n else np.zeros((k, k), np.int64)

    def score(fn, average: str | None) -> Tensor:
        return fn(probs_t, labels_t, k, average=average, validate_args=False)

    per_class = {
        "precision": score(F.multiclass_precision, None) if n else torch.zeros(k),
        "recall": score(F.multiclass_recall, None) if n else torch.zeros(k),
        "f1": score(F.multiclass_f1_score, None) if n else torch.zeros(k),
    }
    return {
        "n_images": n,
        "accuracy": float(score(F.multiclass_accuracy, "micro")) if n else nan,
        "macro_precision": float(score(F.multiclass_precision, "macro")) if n else nan,
        "macro_recall": float(score(F.multiclass_recall, "macro")) if n else nan,
        "macro_f1": float(score(F.multiclass_f1_score, "macro")) if n else nan,
        "ece": expected_calibration_error(probs_t.numpy(), labels_t.numpy(), 15),
        "ece_bins": 15,
        "nll": negative_log_likelihood(probs_t.numpy(), labels_t.numpy()),
        "per_class": {
            name: {
                **{metric: float(values[i]) for metric, values in per_class.items()},
                "support": int(matrix[i].sum()),
            }
            for i, name in enumerate(class_names)
        },
        "confusion_matrix": {
            "rows": "true class",
            "columns": "predicted class",
            "classes": list(class_names),
            "counts": matrix.tolist(),
        },
    }
