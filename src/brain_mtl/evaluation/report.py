"""The evaluation report: run a model over a split, compute every figure, write ``report.json`` and ``report.md``.

Three steps, usable apart:

1. :func:`collect_records` runs the model (eval mode, no grad) and keeps a few numbers per image (class probabilities,
   mask areas, pixel counts, HD95): no full mask is kept, so memory stays small on any test set.
2. :func:`build_report` turns the records into the report dict (pure NumPy), once without and once with the mask
   gate, with bootstrap intervals for the headline numbers.
3. :func:`write_report` writes ``report.json``, ``report.md``, ``confusion_matrix.png`` and ``per_image.csv``.

:func:`evaluate` chains them for a module and a datamodule.
"""

from __future__ import annotations

import csv
import datetime as _dt
import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from brain_mtl import jsonsafe
from brain_mtl.classes import CLASS_NAMES, NO_TUMOR
from brain_mtl.evaluation import metrics as M

if TYPE_CHECKING:
    from brain_mtl.inference.tta import TTAMode

CONVENTIONS: dict[str, str] = {
    "resolution": "Masks are compared at the resolution of the evaluation loader (the network's input grid), "
    "not at the original image size; areas and HD95 are in pixels of that grid.",
    "forward": "One pass over every image of the split, model in eval mode, float32 (no autocast), no test-time "
    "augmentation.",
    "threshold": "A pixel is predicted tumour when sigmoid(mask logit) > mask_threshold.",
    "pooled": "Pooled Dice/IoU/pixel accuracy: TP, FP, FN (TN) summed over all pixels of the images, then one ratio "
    "(the reference notebook's and the BRISC paper's convention).",
    "per_image": "Per-image Dice/IoU: the ratio in each image, then mean, sample sd (ddof=1) and median over images.",
    "empty_masks": "Empty truth and empty prediction: Dice = IoU = 1 (counted as perfect). Empty truth and a "
    "non-empty prediction (or the reverse): Dice = IoU = 0.",
    "hd95": "HD95: max of the two directed 95th percentiles of Euclidean distances between mask boundaries "
    "(mask pixels with a 4-neighbour outside the mask), in pixels. Both masks empty: 0. Exactly one mask empty "
    "(e.g. an empty prediction on a tumour): undefined, excluded from the HD95 summary and counted as "
    "'hd95 undefined'.",
    "tumour_images": "Tumour segmentation figures use the tumour images (true class glioma, meningioma or pituitary) "
    "that have a ground-truth mask.",
    "all_images": "All-image Dice: mean per-image Dice over every image with a known mask, no-tumour images "
    "included (their truth is empty: an empty prediction scores 1, any mask scores 0).",
    "false_mask_rate": "False-mask rate: share of no-tumour images whose predicted mask has at least "
    "false_mask_min_area pixels.",
    "mask_gate": "Mask gate: the predicted mask is emptied when the class head's most probable class is no_tumor, "
    "or when the mask has fewer than gate_min_area pixels. The classification figures do not depend on it.",
    "classification": "Classification over every image of the split. Macro averages are over the classes present "
    "in the ground truth; a per-class ratio that is 0/0 is reported as 0. ECE: top-class confidence, 15 "
    "equal-width bins ((b-1)/15, b/15].",
    "size_terciles": "Size terciles: tumour images split at the 1/3 and 2/3 quantiles of the ground-truth area "
    "(share of the image): small <= q1 < medium <= q2 < large.",
    "intervals": "95% intervals: percentile bootstrap over images (resampled with replacement), seeded.",
}
"""The conventions, written into the report so that every number can be read without the code."""


@dataclass
class ImageRecords:
    """A few numbers per evaluated image (N images, C classes); no masks are kept.

    Attributes:
        paths: N image paths.
        labels: (N,) true class indices.
        probs: (N, C) class probabilities (softmax of the class logits).
        has_mask: (N,) whether the ground-truth mask is known (tumour image with a mask, or a no-tumour image).
        heights: (N,) height of the evaluated grid.
        widths: (N,) width of the evaluated grid.
        truth_area: (N,) ground-truth mask pixels (0 where the mask is unknown).
        pred_area: (N,) predicted mask pixels.
        counts: (N, 4) tp, fp, fn, tn of the prediction against the truth (meaningless where ``has_mask`` is False).
        hd95: (N,) HD95 in pixels (NaN where undefined or the mask is unknown).
    """

    paths: list[str] = field(default_factory=list)
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    probs: np.ndarray = field(default_factory=lambda: np.zeros((0, len(CLASS_NAMES))))
    has_mask: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    heights: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    widths: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    truth_area: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    pred_area: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    counts: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), dtype=np.int64))
    hd95: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def __len__(self) -> int:
        return len(self.labels)

    @classmethod
    def from_masks(
        cls,
        paths: Sequence[str],
        labels: Sequence[int],
        probs: np.ndarray,
        pred_masks: Iterable[np.ndarray],
        truth_masks: Iterable[np.ndarray],
        has_mask: Sequence[bool],
    ) -> ImageRecords:
        """Build records from full masks (what :func:`collect_records` does batch by batch).

        Args:
            paths: N image paths.
            labels: N true class indices.
            probs: (N, C) class probabilities.
            pred_masks: N binary (H, W) predicted masks.
            truth_masks: N binary (H, W) ground-truth masks (anything, e.g. zeros, where ``has_mask`` is False).
            has_mask: N flags: is the ground truth known.
        """
        records = cls()
        records.extend(paths, labels, probs, pred_masks, truth_masks, has_mask)
        return records

    def extend(self, paths, labels, probs, pred_masks, truth_masks, has_mask) -> None:
        """Append images (same arguments as :meth:`from_masks`), computing their counts and HD95 now."""
        rows = []
        for pred, truth, known in zip(pred_masks, truth_masks, has_mask, strict=True):
            pred = np.asarray(pred) > 0
            truth = np.asarray(truth) > 0
            counts = M.confusion_counts(pred, truth)
            distance = M.hd95(pred, truth) if known else float("nan")
            rows.append(
                (pred.shape[0], pred.shape[1], int(truth.sum()) if known else 0, int(pred.sum()), counts, distance)
            )
        if not rows:
            return
        heights, widths, truth_area, pred_area, counts, distances = zip(*rows, strict=True)
        self.paths.extend(str(p) for p in paths)
        self.labels = np.concatenate([self.labels, np.asarray(labels, dtype=np.int64)])
        self.probs = np.concatenate(
            [self.probs.reshape(-1, np.asarray(probs).shape[1]), np.asarray(probs, dtype=np.float64)]
        )
        self.has_mask = np.concatenate([self.has_mask, np.asarray(has_mask, dtype=bool)])
        self.heights = np.concatenate([self.heights, np.asarray(heights, dtype=np.int64)])
        self.widths = np.concatenate([self.widths, np.asarray(widths, dtype=np.int64)])
        self.truth_area = np.concatenate([self.truth_area, np.asarray(truth_area, dtype=np.int64)])
        self.pred_area = np.concatenate([self.pred_area, np.asarray(pred_area, dtype=np.int64)])
        self.counts = np.concatenate([self.counts, np.asarray(counts, dtype=np.int64).reshape(-1, 4)])
        self.hd95 = np.concatenate([self.hd95, np.asarray(distances, dtype=np.float64)])
        if len(self.paths) != len(self.labels):
            raise ValueError("paths, labels and masks must have the same length")


# --------------------------------------------------------------------------------------------- running the model


def collect_records(
    module, dataloader: Iterable[dict], mask_threshold: float = 0.5, tta: TTAMode = "none"
) -> ImageRecords:
    """Run a model over an evaluation loader and keep per-image numbers.

    The model runs in eval mode under ``torch.inference_mode()`` on the device of its parameters; its previous
    train/eval mode is restored afterwards. With ``tta`` the probabilities are averaged over the views of
    :func:`brain_mtl.inference.tta.tta_probs` (the Predictor's implementation) before thresholding.

    Args:
        module: an ``nn.Module`` (a ``BrainTumorModule`` or a bare ``UNet``) whose call on a (B, 3, H, W) batch returns
            an object with ``mask_logits`` (B, 1, H, W) and ``class_logits`` (B, C) (or a ``(mask, class)`` tuple).
        dataloader: batches of sample dicts with ``image`` (B, 3, H, W), ``mask`` (B, 1, H, W) in {0, 1}, ``has_mask``
            (B,), ``label`` (B,) and ``path`` (list of B strings).
        mask_threshold: probability above which a pixel is predicted tumour.
        tta: test-time augmentation: ``none`` (one pass), ``flip`` (and the horizontal mirror) or ``d4`` (the 8
            flips, 90-degree rotations and transposes); each view's mask is mapped back before averaging.

    Returns:
        The per-image records.

    Raises:
        ValueError: an unknown ``tta``; ``d4`` on images whose sides are not multiples of the network's output
            stride; mask logits of another size than the ground-truth masks.
    """
    import torch

    from brain_mtl.inference.tta import output_stride_of, parse_tta, tta_probs

    mode = parse_tta(tta)
    stride = output_stride_of(module)

    try:
        device = next(module.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    records = ImageRecords()
    was_training = module.training
    module.eval()
    try:
        with torch.inference_mode():
            for batch in dataloader:
                mask_probs, class_probs = tta_probs(module, batch["image"].to(device), mode, output_stride=stride)
                truth = batch["mask"]
                if mask_probs.shape[-2:] != truth.shape[-2:]:
                    raise ValueError(
                        f"the model's mask logits are {tuple(mask_probs.shape[-2:])} but the ground-truth masks "
                        f"are {tuple(truth.shape[-2:])}; the evaluation loader must feed images and masks of the "
                        "size the model predicts"
                    )
                probs = class_probs.cpu().numpy()
                pred = (mask_probs > mask_threshold)[:, 0].cpu().numpy()
                truth_np = (truth.reshape(truth.shape[0], *truth.shape[-2:]) > 0.5).cpu().numpy()
                labels = batch["label"].reshape(-1).cpu().numpy()
                has_mask = batch["has_mask"].reshape(-1).cpu().numpy().astype(bool)
                paths = batch.get("path") or [f"image_{len(records) + i}" for i in range(len(labels))]
                records.extend(paths, labels, probs, pred, truth_np, has_mask)
    finally:
        module.train(was_training)
    return records


# --------------------------------------------------------------------------------------------- building the report


def _gated_counts_and_hd95(records: ImageRecords, veto: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts, HD95 and predicted area after emptying the vetoed predictions (no model run needed)."""
    total = records.heights * records.widths
    counts = records.counts.copy()
    counts[veto] = np.stack(
        [
            np.zeros(veto.sum(), np.int64),
            np.zeros(veto.sum(), np.int64),
            records.truth_area[veto],
            total[veto] - records.truth_area[veto],
        ],
        axis=1,
    )
    hd = records.hd95.copy()
    hd[veto] = np.where(records.truth_area[veto] > 0, np.nan, 0.0)
    hd[veto & ~records.has_mask] = np.nan
    area = np.where(veto, 0, records.pred_area)
    return counts, hd, area


def _segmentation_block(counts: np.ndarray, hd: np.ndarray, truth_area: np.ndarray, pred_area: np.ndarray) -> dict:
    tp, fp, fn, tn = counts.T if counts.size else (np.zeros(0),) * 4
    n = len(tp)
    both_empty = (truth_area == 0) & (pred_area == 0)
    one_empty = (truth_area == 0) != (pred_area == 0)
    dice_i = M.dice_score(tp, fp, fn) if n else np.zeros(0)
    iou_i = M.iou_score(tp, fp, fn) if n else np.zeros(0)
    acc_i = M.pixel_accuracy(tp, fp, fn, tn) if n else np.zeros(0)
    nan = float("nan")
    return {
        "n_images": n,
        "dice_pooled": float(M.pooled_dice(tp, fp, fn)) if n else nan,
        "iou_pooled": float(M.pooled_iou(tp, fp, fn)) if n else nan,
        "pixel_accuracy_pooled": float(M.pixel_accuracy(tp.sum(), fp.sum(), fn.sum(), tn.sum())) if n else nan,
        "dice_per_image": M.summarize(dice_i),
        "iou_per_image": M.summarize(iou_i),
        "pixel_accuracy_per_image_mean": float(np.mean(acc_i)) if n else nan,
        "hd95_px": {
            **M.summarize(hd),
            "n_both_empty": int(both_empty.sum()),
            "n_undefined_one_empty": int(one_empty.sum()),
        },
        "n_empty_prediction": int((pred_area == 0).sum()),
    }


def _headline(name: str, value: float, ci: tuple[float, float], n: int, population: str) -> dict:
    return {"value": value, "ci95": [ci[0], ci[1]], "n_images": n, "over": population, "name": name}


def _nanmean_rows(x: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(x, axis=1)


def _variant(
    records: ImageRecords,
    veto: np.ndarray | None,
    class_names: Sequence[str],
    no_tumor: int,
    false_mask_min_area: int,
    bootstrap: int,
    seed: int,
) -> dict:
    """One section ('ungated' when veto is None, else 'gated') of the report."""
    if veto is None:
        counts, hd, pred_area = records.counts, records.hd95, records.pred_area
    else:
        counts, hd, pred_area = _gated_counts_and_hd95(records, veto)
    labels = records.labels
    known = records.has_mask
    tumour = known & (labels != no_tumor)
    healthy = labels == no_tumor
    image_area = (records.heights * records.widths).astype(np.float64)
    share = np.divide(records.truth_area, image_area, out=np.zeros(len(records)), where=image_area > 0)

    def block(sel: np.ndarray) -> dict:
        return _segmentation_block(counts[sel], hd[sel], records.truth_area[sel], pred_area[sel])

    by_class = {name: block(tumour & (labels == k)) for k, name in enumerate(class_names) if k != no_tumor}
    (q1, q2), group = M.size_terciles(share[tumour])
    tercile = np.full(len(records), -1)
    tercile[tumour] = group
    by_size = {
        "edges_share_of_image": [q1, q2],
        **{label: block(tercile == g) for g, label in enumerate(("small", "medium", "large"))},
    }

    tp, fp, fn, _ = counts.T if counts.size else (np.zeros(0),) * 4
    all_dice = M.dice_score(tp[known], fp[known], fn[known]) if known.any() else np.zeros(0)
    all_iou = M.iou_score(tp[known], fp[known], fn[known]) if known.any() else np.zeros(0)
    rate, flagged, n_healthy = M.false_mask_rate(pred_area[healthy], false_mask_min_area)
    all_images = {
        "n_images": int(known.sum()),
        "n_no_tumour": int((known & healthy).sum()),
        "n_tumour": int(tumour.sum()),
        "n_excluded_unknown_mask": int((~known).sum()),
        "dice_mean": float(all_dice.mean()) if all_dice.size else float("nan"),
        "iou_mean": float(all_iou.mean()) if all_iou.size else float("nan"),
        "dice_pooled": float(M.pooled_dice(tp[known], fp[known], fn[known])) if known.any() else float("nan"),
    }
    false_masks = {"rate": rate, "n_flagged": flagged, "n_images": n_healthy, "min_area_px": int(false_mask_min_area)}

    t_tp, t_fp, t_fn = tp[tumour], fp[tumour], fn[tumour]
    n_t = int(tumour.sum())
    seg = block(tumour)
    pop_t = "tumour images with a ground-truth mask"

    def ci(stat, *arrays) -> tuple[float, float]:
        return M.bootstrap_ci(stat, arrays, n_resamples=bootstrap, seed=seed)

    headline = {
        "dice_tumour_pooled": _headline(
            "Dice, pooled",
            seg["dice_pooled"],
            ci(lambda a, b, c: M.pooled_dice(a, b, c, axis=1), t_tp, t_fp, t_fn),
            n_t,
            pop_t,
        ),
        "dice_tumour_mean": _headline(
            "Dice, per-image mean",
            seg["dice_per_image"]["mean"],
            ci(lambda d: d.mean(axis=1), M.dice_score(t_tp, t_fp, t_fn) if n_t else np.zeros(0)),
            n_t,
            pop_t,
        ),
        "iou_tumour_pooled": _headline(
            "IoU, pooled",
            seg["iou_pooled"],
            ci(lambda a, b, c: M.pooled_iou(a, b, c, axis=1), t_tp, t_fp, t_fn),
            n_t,
            pop_t,
        ),
        "iou_tumour_mean": _headline(
            "IoU, per-image mean",
            seg["iou_per_image"]["mean"],
            ci(lambda d: d.mean(axis=1), M.iou_score(t_tp, t_fp, t_fn) if n_t else np.zeros(0)),
            n_t,
            pop_t,
        ),
        "hd95_tumour_mean": _headline(
            "HD95 (px), mean where defined",
            seg["hd95_px"]["mean"],
            ci(_nanmean_rows, hd[tumour]),
            seg["hd95_px"]["n"],
            pop_t + ", HD95 defined",
        ),
        "dice_all_images": _headline(
            "Dice, all images (mean)",
            all_images["dice_mean"],
            ci(lambda d: d.mean(axis=1), all_dice),
            all_images["n_images"],
            "all images with a known mask, no-tumour included",
        ),
        "false_mask_rate": _headline(
            f"False-mask rate (>= {false_mask_min_area} px)",
            rate,
            ci(lambda a: (a >= false_mask_min_area).mean(axis=1), pred_area[healthy]),
            n_healthy,
            "no-tumour images",
        ),
    }
    out = {
        "headline": headline,
        "tumour_segmentation": {"overall": seg, "by_class": by_class, "by_size": by_size},
        "all_images": all_images,
        "false_masks": false_masks,
    }
    if veto is not None:
        out["n_masks_emptied_by_gate"] = int((veto & (records.pred_area > 0)).sum())
    return out


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
    meta: dict[str, Any] | None = None,
    tta: TTAMode = "none",
) -> dict:
    """Compute every figure of the report from per-image records (pure NumPy).

    Args:
        records: per-image numbers from :func:`collect_records` or :meth:`ImageRecords.from_masks`.
        class_names: class names in index order.
        no_tumor: index of the healthy class.
        mask_gate: also compute the 'gated' section (masks emptied when the class head says no tumour).
        gate_min_area: the gate also empties predicted masks smaller than this many pixels (0: class veto only).
        false_mask_min_area: smallest predicted area (pixels) that counts as a mask on a no-tumour image.
        bootstrap: number of bootstrap resamples for the intervals (0: no intervals).
        seed: seed of the bootstrap.
        mask_threshold: the probability threshold used for the masks (recorded only).
        duplicates: groups of identical images, ``{"train": [...], "evaluated": [...]}`` (from
            :mod:`brain_mtl.evaluation.leakage`), or None when not checked.
        duplicates_note: why duplicates were not checked, or how.
        meta: extra facts to record (checkpoint path, split, ...).
        tta: the test-time augmentation the records were collected with (recorded in ``meta.tta`` and in the
            ``forward`` convention).

    Returns:
        The report dict: ``meta``, ``conventions``, ``classification``, ``ungated``, ``gated`` (None without the
        gate), ``headline`` (flat name -> value, for loggers), ``leakage`` and ``per_image``.
    """
    n = len(records)
    labels = records.labels
    pred_labels = records.probs.argmax(axis=1) if n else np.zeros(0, dtype=np.int64)
    num_classes = len(class_names)

    classification = M.classification_summary(records.probs, labels, class_names)
    acc_ci = M.bootstrap_ci(lambda y, p: (y == p).mean(axis=1), (labels, pred_labels), bootstrap, seed)
    f1_ci = M.bootstrap_ci(
        lambda y, p: M.macro_f1(M.confusion_matrix(y, p, num_classes)), (labels, pred_labels), bootstrap, seed
    )
    classification["headline"] = {
        "accuracy": _headline("Accuracy", classification["accuracy"], acc_ci, n, "all images"),
        "macro_f1": _headline("Macro F1", classification["macro_f1"], f1_ci, n, "all images"),
    }

    ungated = _variant(records, None, class_names, no_tumor, false_mask_min_area, bootstrap, seed)
    veto = (pred_labels == no_tumor) | (records.pred_area < gate_min_area)
    gated = _variant(records, veto, class_names, no_tumor, false_mask_min_area, bootstrap, seed) if mask_gate else None

    flat = {k: v["value"] for k, v in classification["headline"].items()}
    flat["ece"] = classification["ece"]
    flat.update({k: v["value"] for k, v in ungated["headline"].items()})
    if gated is not None:
        flat.update({f"gated/{k}": v["value"] for k, v in gated["headline"].items()})

    sizes = sorted({(int(h), int(w)) for h, w in zip(records.heights, records.widths, strict=True)})
    tumour_known = records.has_mask & (labels != no_tumor)
    from brain_mtl import __version__
    from brain_mtl.inference.tta import parse_tta

    tta = parse_tta(tta)
    report = {
        "meta": {
            "created_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "brain_mtl_version": __version__,
            **(meta or {}),
            "n_images": n,
            "n_images_with_mask": int(records.has_mask.sum()),
            "n_tumour_images_with_mask": int(tumour_known.sum()),
            "n_tumour_images_without_mask": int(((labels != no_tumor) & ~records.has_mask).sum()),
            "n_no_tumour_images": int((labels == no_tumor).sum()),
            "n_images_per_class": {name: int((labels == k).sum()) for k, name in enumerate(class_names)},
            "evaluated_grid_sizes": [f"{h}x{w}" for h, w in sizes[:10]] + (["..."] if len(sizes) > 10 else []),
            "mask_threshold": mask_threshold,
            "tta": tta,
            "mask_gate": bool(mask_gate),
            "gate_min_area_px": int(gate_min_area),
            "false_mask_min_area_px": int(false_mask_min_area),
            "bootstrap_resamples": int(bootstrap),
            "bootstrap_seed": int(seed),
            "class_names": list(class_names),
        },
        "conventions": {**CONVENTIONS, "forward": forward_convention(tta)},
        "headline": flat,
        "classification": classification,
        "ungated": ungated,
        "gated": gated,
        "leakage": {
            "checked": duplicates is not None,
            "note": duplicates_note or "",
            "n_groups": len(duplicates) if duplicates is not None else None,
            "n_evaluated_images": sum(len(g["evaluated"]) for g in duplicates) if duplicates is not None else None,
            "groups": duplicates if duplicates is not None else [],
        },
        "per_image": _per_image_rows(records, pred_labels, veto, class_names),
    }
    return report


_TTA_VIEWS = {
    "flip": "the image and its horizontal mirror",
    "d4": "the 8 symmetries of the square: identity, horizontal and vertical flips, rotations by 90, 180 and 270 "
    "degrees, transpose, anti-transpose",
}


def forward_convention(tta: TTAMode = "none") -> str:
    """The report's ``forward`` convention for a test-time augmentation mode (``none``: ``CONVENTIONS["forward"]``)."""
    if tta == "none":
        return CONVENTIONS["forward"]
    return (
        "Every image of the split, model in eval mode, float32 (no autocast), with test-time augmentation "
        f"'{tta}' ({_TTA_VIEWS[tta]}): one forward pass per view, each view's mask probabilities mapped back to the "
        "original orientation, then mask and class probabilities (not logits) averaged over the views before the "
        "threshold and the argmax."
    )


def _per_image_rows(records: ImageRecords, pred_labels, veto, class_names) -> list[dict]:
    tp, fp, fn, _ = records.counts.T if len(records) else (np.zeros(0),) * 4
    dice = M.dice_score(tp, fp, fn) if len(records) else np.zeros(0)
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


# --------------------------------------------------------------------------------------------- writing


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


def report_markdown(report: dict) -> str:
    """The report as readable Markdown tables, with its conventions stated."""
    meta, cls = report["meta"], report["classification"]
    lines = ["# Evaluation report", ""]
    if meta.get("data_synthetic"):
        lines += [
            f"> **Synthetic data.** These figures are on the synthetic dataset in `{meta.get('data_root')}` (drawn "
            "by brain_mtl), not on real MRI scans: they show that the pipeline works, not how the model does on "
            "patients.",
            "",
        ]
    synthetic = meta.get("data_synthetic")
    facts = [
        ("data root", meta.get("data_root") or "n/a"),
        (
            "synthetic data",
            "unknown" if synthetic is None else "yes (written by the brain_mtl generator)" if synthetic else "no",
        ),
        ("split", meta.get("split", "n/a")),
        ("checkpoint", meta.get("ckpt_path") or "n/a"),
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
    lines += ["", f"ECE (15 bins, all {cls['n_images']} images): {_fmt(cls['ece'])}"]

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

    lines += ["", "## Conventions", ""]
    lines += [f"- **{key}**: {text}" for key, text in report["conventions"].items()]
    lines += ["", "Per-image numbers: `per_image.csv`. Every number above: `report.json`.", ""]
    return "\n".join(lines)


def write_report(report: dict, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``report.json``, ``report.md``, ``confusion_matrix.png`` and ``per_image.csv`` into a folder.

    Args:
        report: the dict from :func:`build_report` or :func:`evaluate`.
        out_dir: destination folder (created if missing).

    Returns:
        (path of report.json, path of report.md).
    """
    from brain_mtl.viz import confusion_matrix_image, write_png

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    per_image = report.get("per_image", [])
    body = {k: v for k, v in report.items() if k != "per_image"}
    body["per_image"] = "per_image.csv"
    json_path, md_path = out / "report.json", out / "report.md"
    json_path.write_text(jsonsafe.dumps(body, indent=2) + "\n", encoding="utf-8")
    md_path.write_text(report_markdown(jsonsafe.json_ready(body)), encoding="utf-8")
    cm = report["classification"]["confusion_matrix"]
    image = confusion_matrix_image(np.asarray(cm["counts"]), cm["classes"])
    write_png(out / "confusion_matrix.png", image)
    if per_image:
        with open(out / "per_image.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(per_image[0]))
            writer.writeheader()
            writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in per_image)
    return json_path, md_path


# --------------------------------------------------------------------------------------------- the whole thing


def evaluate(
    module,
    datamodule,
    split: str = "test",
    *,
    mask_gate: bool = True,
    gate_min_area: int = 0,
    false_mask_min_area: int | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
    mask_threshold: float | None = None,
    check_duplicates: bool = True,
    meta: dict[str, Any] | None = None,
    tta: TTAMode = "none",
) -> dict:
    """Evaluate a model on every image of a split and return the report dict.

    Args:
        module: a ``BrainTumorModule`` (or any module returning ``mask_logits`` and ``class_logits``).
        datamodule: an object with ``evaluation_dataloader(split)`` (e.g. ``BrainTumorDataModule``).
        split: the split to evaluate.
        mask_gate: also report the figures with the mask gate (masks emptied when the class head says no tumour).
        gate_min_area: the gate also empties predicted masks smaller than this many pixels (0: class veto only).
        false_mask_min_area: smallest predicted area (pixels) that counts as a mask on a no-tumour image;
            default: the module's ``hparams.false_mask_min_area`` (so that the report and the logged
            ``false_mask_rate`` agree), else 10.
        bootstrap: bootstrap resamples for the 95% intervals (0: none).
        seed: bootstrap seed.
        mask_threshold: mask probability threshold; default: the module's ``hparams.mask_threshold``, else 0.5.
        check_duplicates: compare the split's images with the training images by content (possible leakage).
        meta: extra facts to record in the report (e.g. the checkpoint path).
        tta: test-time augmentation of the model pass: ``none``, ``flip`` or ``d4`` (see
            :func:`collect_records`); recorded in the report.

    Returns:
        The report dict (see :func:`build_report`); write it with :func:`write_report`.
    """
    from brain_mtl.inference.tta import parse_tta

    tta = parse_tta(tta)  # an unknown mode fails before the data is touched
    hparams = getattr(module, "hparams", None)
    hparams = hparams if hasattr(hparams, "get") else {}
    if mask_threshold is None:
        mask_threshold = float(hparams.get("mask_threshold", 0.5))
    if false_mask_min_area is None:
        false_mask_min_area = int(hparams.get("false_mask_min_area", 10))
    if getattr(datamodule, "index", True) is None and hasattr(datamodule, "setup"):
        datamodule.setup("test")  # a BrainTumorDataModule fresh from its constructor has not indexed its root yet
    records = collect_records(module, datamodule.evaluation_dataloader(split), mask_threshold=mask_threshold, tta=tta)
    if len(records) == 0:
        raise ValueError(f"the {split!r} evaluation loader yielded no image; nothing to report")
    duplicates, note = (None, "Not requested.")
    if check_duplicates:
        from brain_mtl.evaluation.leakage import datamodule_duplicates

        duplicates, note = datamodule_duplicates(datamodule, split, records.paths)
    return build_report(
        records,
        mask_gate=mask_gate,
        gate_min_area=gate_min_area,
        false_mask_min_area=false_mask_min_area,
        bootstrap=bootstrap,
        seed=seed,
        mask_threshold=mask_threshold,
        duplicates=duplicates,
        duplicates_note=note,
        meta={"split": split, **data_facts(datamodule), **(meta or {})},
        tta=tta,
    )


def data_facts(datamodule: Any) -> dict[str, Any]:
    """Where the evaluated data is and whether it is synthetic, for the report's ``meta``.

    Read from the datamodule's ``dataset_root`` and ``is_synthetic`` (``BrainTumorDataModule``), else from a
    ``root`` attribute (synthetic when :func:`~brain_mtl.synthetic.is_synthetic_dataset` says so).

    Returns:
        ``{"data_root": absolute path or None, "data_synthetic": bool or None}`` (None: the datamodule does not
        say).
    """
    from brain_mtl.synthetic import is_synthetic_dataset

    root = getattr(datamodule, "dataset_root", None)
    if root is None:
        root = getattr(datamodule, "root", None)
    if root is None:
        return {"data_root": None, "data_synthetic": None}
    root = Path(root).absolute()
    synthetic = getattr(datamodule, "is_synthetic", None)
    if not isinstance(synthetic, bool):
        synthetic = is_synthetic_dataset(root)
    return {"data_root": str(root), "data_synthetic": synthetic}
