"""The evaluation report's shape: dataclasses for every section, and the conventions every number follows.

:func:`brain_mtl.evaluation.build.build_report` fills a :class:`Report` from per-image records (what the test step
measured on each image); :mod:`brain_mtl.evaluation.render` writes it as Markdown, JSON and CSV; the
:class:`~brain_mtl.callbacks.EvaluationReport` callback runs both at the end of ``trainer.test``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from brain_mtl.models.tta import TTAMode

__all__ = [
    "CONVENTIONS",
    "AllImages",
    "Classification",
    "FalseMasks",
    "Headline",
    "Leakage",
    "Report",
    "ReportMeta",
    "SegmentationFigures",
    "TumourSegmentation",
    "Variant",
    "forward_convention",
]

CONVENTIONS: dict[str, str] = {
    "resolution": "Masks are compared at the resolution of the evaluation loader (the network's input grid), "
    "not at the original image size; areas and HD95 are in pixels of that grid.",
    "forward": "The test loop's one pass over every image of the split (model in eval mode, the trainer's precision), "
    "no test-time augmentation; the report is built from what the test step measured, so it equals the logged "
    "test metrics.",
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
    "classification": "Classification over every image of the split, with torchmetrics (the functions the training "
    "loop logs). Macro averages leave out a class that is neither in the ground truth nor predicted; a per-class "
    "ratio that is 0/0 is 0. ECE: top-class confidence, 15 equal-width bins (torchmetrics, L1 norm).",
    "size_terciles": "Size terciles: tumour images split at the 1/3 and 2/3 quantiles of the ground-truth area "
    "(share of the image): small <= q1 < medium <= q2 < large.",
    "intervals": "95% intervals: percentile bootstrap over images (resampled with replacement), seeded.",
}
"""The conventions, written into the report so that every number can be read without the code."""


@dataclass
class Headline:
    """One headline figure with its 95% bootstrap interval."""

    name: str
    value: float
    ci95: list[float]
    n_images: int
    over: str


@dataclass
class SegmentationFigures:
    """Mask figures over a set of images: pooled and per-image Dice/IoU, pixel accuracy, HD95."""

    n_images: int
    dice_pooled: float
    iou_pooled: float
    pixel_accuracy_pooled: float
    dice_per_image: dict[str, float | int]
    iou_per_image: dict[str, float | int]
    pixel_accuracy_per_image_mean: float
    hd95_px: dict[str, float | int]
    n_empty_prediction: int


@dataclass
class TumourSegmentation:
    """Tumour images with a mask: overall, per true class, per size tercile (``by_size`` also holds the edges)."""

    overall: SegmentationFigures
    by_class: dict[str, SegmentationFigures]
    by_size: dict[str, Any]


@dataclass
class AllImages:
    """Every image with a known mask, no-tumour included (empty truth and empty prediction score 1)."""

    n_images: int
    n_no_tumour: int
    n_tumour: int
    n_excluded_unknown_mask: int
    dice_mean: float
    iou_mean: float
    dice_pooled: float


@dataclass
class FalseMasks:
    """No-tumour images given a mask of at least ``min_area_px`` pixels."""

    rate: float
    n_flagged: int
    n_images: int
    min_area_px: int


@dataclass
class Variant:
    """The mask figures without (``ungated``) or with (``gated``) the mask gate."""

    headline: dict[str, Headline]
    tumour_segmentation: TumourSegmentation
    all_images: AllImages
    false_masks: FalseMasks
    n_masks_emptied_by_gate: int | None = None


@dataclass
class Classification:
    """Classification over every image: accuracy, macro and per-class figures, confusion matrix, ECE and NLL.

    ``calibration``: for a class head scored at a temperature (``python -m brain_mtl calibrate``), that temperature
    and the ECE and NLL without it (``before``) and with it (``after``, the figures above); None otherwise.
    """

    n_images: int
    accuracy: float
    macro_precision: float
    macro_recall: float
    macro_f1: float
    ece: float
    ece_bins: int
    per_class: dict[str, dict[str, float | int]]
    confusion_matrix: dict[str, Any]
    headline: dict[str, Headline] = field(default_factory=dict)
    nll: float = float("nan")
    calibration: dict[str, Any] | None = None


@dataclass
class Leakage:
    """Byte-identical images shared by the training folder and the evaluated split, and near-duplicates.

    ``near_duplicates``: one ``{"evaluated": path, "train": [paths], "distance": bits}`` per evaluated image with a
    near-duplicate (not identical) training image; None when not checked (``near_note`` says why).
    """

    checked: bool
    note: str
    n_groups: int | None
    n_evaluated_images: int | None
    groups: list[dict[str, list[str]]]
    near_duplicates: list[dict[str, Any]] | None = None
    near_note: str = ""


@dataclass
class ReportMeta:
    """What was evaluated, how, and with which settings."""

    created_utc: str
    brain_mtl_version: str
    n_images: int
    n_images_with_mask: int
    n_tumour_images_with_mask: int
    n_tumour_images_without_mask: int
    n_no_tumour_images: int
    n_images_per_class: dict[str, int]
    evaluated_grid_sizes: list[str]
    mask_threshold: float | None
    tta: str
    mask_gate: bool
    gate_min_area_px: int
    false_mask_min_area_px: int
    bootstrap_resamples: int
    bootstrap_seed: int
    class_names: list[str]
    extra: dict[str, Any] = field(default_factory=dict)
    """Facts given by the caller: ``split``, ``ckpt_path``, ``data_root``, ``data_synthetic``, ``precision``."""


@dataclass
class Report:
    """The evaluation report. ``to_dict()`` is the content of ``report.json`` (plus ``per_image`` rows)."""

    meta: ReportMeta
    conventions: dict[str, str]
    headline: dict[str, float]
    """Flat name -> value of the headline figures (``gated/<name>`` with the gate), for loggers."""
    classification: Classification
    ungated: Variant
    gated: Variant | None
    leakage: Leakage
    per_image: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        """The report as nested plain types (``meta.extra`` merged into ``meta``)."""
        out = dataclasses.asdict(self)
        extra = out["meta"].pop("extra")
        out["meta"] = {**extra, **out["meta"]}
        return out


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
        "The test loop's one pass over every image of the split (model in eval mode, the trainer's precision), with "
        "test-time augmentation "
        f"'{tta}' ({_TTA_VIEWS[tta]}): one forward pass per view, each view's mask probabilities mapped back to the "
        "original orientation, then mask and class probabilities (not logits) averaged over the views before the "
        "threshold and the argmax."
    )
