"""The joint loss: a mask loss on segmentation batches plus cross-entropy on class logits, weighted.

The parts are returned separately so that the task module can log each of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MaskLoss = Literal["bce", "dice_bce"]


class LossParts(NamedTuple):
    """The joint loss and the parts it is made of (each a scalar tensor; a missing part is None)."""

    total: Tensor
    mask: Tensor | None
    cls: Tensor | None


def soft_dice_loss(mask_logits: Tensor, target: Tensor, eps: float = 1.0) -> Tensor:
    """1 - soft Dice, pooled over the batch's pixels.

    Pooling over the whole batch (rather than averaging per-image Dice) keeps the loss defined for the
    empty masks of healthy scans, which would otherwise give 0/0.

    Args:
        mask_logits: (B, 1, H, W) logits.
        target: (B, 1, H, W) in {0, 1}.
        eps: smoothing added to numerator and denominator.

    Returns:
        Scalar tensor.
    """
    prob = torch.sigmoid(mask_logits.float())
    target = target.float()
    intersection = (prob * target).sum()
    return 1 - (2 * intersection + eps) / (prob.sum() + target.sum() + eps)


class JointLoss(nn.Module):
    """``mask_weight * mask_loss + class_weight * cross_entropy``.

    Args:
        mask_loss: ``"bce"`` (BCE with logits, as the reference notebook) or ``"dice_bce"`` (soft Dice + BCE).
        mask_weight: weight of the mask part.
        class_weight: weight of the classification part.
        label_smoothing: cross-entropy label smoothing in [0, 1).
        class_weights: optional per-class weights for the cross-entropy (one per class, index order).
        pos_weight: BCE weight of tumour pixels (>1 counters the small tumour area); 1.0 is plain BCE.
    """

    def __init__(
        self,
        mask_loss: MaskLoss = "bce",
        mask_weight: float = 1.0,
        class_weight: float = 1.0,
        label_smoothing: float = 0.0,
        class_weights: Sequence[float] | None = None,
        pos_weight: float = 1.0,
    ) -> None:
        super().__init__()
        if mask_loss not in ("bce", "dice_bce"):
            raise ValueError(f"mask_loss must be 'bce' or 'dice_bce', got {mask_loss!r}")
        self.mask_loss = mask_loss
        self.mask_weight = mask_weight
        self.class_weight = class_weight
        self.label_smoothing = label_smoothing
        self.register_buffer(
            "class_weights", None if class_weights is None else torch.tensor(class_weights, dtype=torch.float32)
        )
        self.register_buffer("pos_weight", torch.tensor([pos_weight], dtype=torch.float32))

    def mask_part(self, mask_logits: Tensor, target: Tensor) -> Tensor:
        """Mask loss for (B, 1, H, W) logits and {0, 1} targets, computed in float32."""
        bce = F.binary_cross_entropy_with_logits(mask_logits.float(), target.float(), pos_weight=self.pos_weight)
        if self.mask_loss == "dice_bce":
            return bce + soft_dice_loss(mask_logits, target)
        return bce

    def class_part(self, class_logits: Tensor, labels: Tensor) -> Tensor:
        """Cross-entropy for (B, C) logits and (B,) integer labels, computed in float32."""
        return F.cross_entropy(
            class_logits.float(), labels, weight=self.class_weights, label_smoothing=self.label_smoothing
        )

    def forward(
        self,
        mask_logits: Tensor | None = None,
        mask_target: Tensor | None = None,
        class_logits: Tensor | None = None,
        labels: Tensor | None = None,
    ) -> LossParts:
        """Combine whichever parts are given (a step may carry only a segmentation or only a class batch).

        Args:
            mask_logits: (B, 1, H, W) or None.
            mask_target: (B, 1, H, W) in {0, 1}, or None.
            class_logits: (N, C) or None.
            labels: (N,) or None.

        Returns:
            LossParts(total, mask, cls).
        """
        mask = self.mask_part(mask_logits, mask_target) if mask_logits is not None else None
        cls = self.class_part(class_logits, labels) if class_logits is not None else None
        if mask is None and cls is None:
            raise ValueError("JointLoss needs mask logits, class logits or both")
        total = sum(
            weight * part for weight, part in ((self.mask_weight, mask), (self.class_weight, cls)) if part is not None
        )
        return LossParts(total, mask, cls)
