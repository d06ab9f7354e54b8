"""The metrics the task logs during training, validation and test, as torchmetrics objects.

Synchronised across processes under DDP: pooled Dice/IoU/pixel accuracy on mask probabilities; accuracy and macro
precision, recall and F1; the false-mask rate. The report's figures are computed from per-image statistics in
:mod:`brain_mtl.evaluation.metrics`, with torchmetrics' functional forms of the same metrics.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import (
    BinaryAccuracy,
    BinaryF1Score,
    BinaryJaccardIndex,
    MulticlassAccuracy,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)

__all__ = ["FalseMaskRate", "classification_metrics", "segmentation_metrics"]


class FalseMaskRate(Metric):
    """Share of images with an empty ground truth that receive a predicted mask of at least ``min_area`` pixels.

    Args:
        min_area: smallest predicted area (in pixels, at network resolution) that counts as a mask.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, min_area: int = 1, **kwargs) -> None:
        super().__init__(**kwargs)
        self.min_area = min_area
        self.add_state("flagged", default=torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0), dist_reduce_fx="sum")

    def update(self, pred_masks: Tensor) -> None:
        """Add a batch of (B, 1, H, W) binary predictions for images known to be tumour-free."""
        areas = pred_masks.flatten(1).sum(dim=1)
        self.flagged += (areas >= self.min_area).sum()
        self.total += pred_masks.shape[0]

    def compute(self) -> Tensor:
        """Flagged / total (0 when no healthy image was seen)."""
        return self.flagged.float() / self.total.clamp(min=1)


def segmentation_metrics(threshold: float = 0.5) -> MetricCollection:
    """Pixel-pooled binary segmentation metrics on mask probabilities: ``dice``, ``iou``, ``pixel_acc``.

    Pooled Dice is the F1 score over all pixels of the epoch.
    """
    return MetricCollection(
        {
            "dice": BinaryF1Score(threshold=threshold),
            "iou": BinaryJaccardIndex(threshold=threshold),
            "pixel_acc": BinaryAccuracy(threshold=threshold),
        }
    )


def classification_metrics(num_classes: int) -> MetricCollection:
    """Accuracy and macro precision, recall and F1 over ``num_classes`` classes."""
    return MetricCollection(
        {
            "acc": MulticlassAccuracy(num_classes, average="micro"),
            "precision": MulticlassPrecision(num_classes, average="macro"),
            "recall": MulticlassRecall(num_classes, average="macro"),
            "f1": MulticlassF1Score(num_classes, average="macro"),
        }
    )
