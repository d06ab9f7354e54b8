"""Several networks as one: the average of their probabilities, returned as the logits of that average."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from brain_mtl.models.postprocess import probabilities
from brain_mtl.models.tta import as_output
from brain_mtl.models.unet import UNetOutput

__all__ = ["EnsembleNet"]


class EnsembleNet(nn.Module):
    """The mean of its members' mask probabilities (sigmoid) and class probabilities (softmax).

    ``forward`` returns them as a :class:`UNetOutput` of logits of the averages (``logit(p)`` and ``log(p)``), so
    that everything downstream (thresholds, the gate, test-time augmentation, the report, ONNX export) treats the
    ensemble as one network: ``sigmoid`` and ``softmax`` of its outputs give the averaged probabilities back. With
    test-time augmentation each view's output is such an average, and averaging over views then averages every
    member's own augmented predictions.

    Args:
        members: networks whose ``forward`` returns a :class:`UNetOutput` (and ``classify`` class logits) for the
            same input size and classes.
    """

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)
        strides = [int(getattr(member, "output_stride", 1)) for member in members]
        self.output_stride = math.lcm(*strides)
        """Input sides must be multiples of every member's stride."""

    def forward(self, x: Tensor) -> UNetOutput:
        """Averaged probabilities of ``(B, 3, H, W)`` images, as logits (see the class)."""
        mask_total, class_total = None, None
        for member in self.members:
            mask_probs, class_probs = probabilities(*member(x))
            mask_total = mask_probs if mask_total is None else mask_total + mask_probs
            class_total = class_probs if class_total is None else class_total + class_probs
        n = len(self.members)
        return as_output(mask_total / n, class_total / n)

    def classify(self, x: Tensor) -> Tensor:
        """``log`` of the members' averaged class probabilities (the encoders and heads only)."""
        total = sum(torch.softmax(member.classify(x).float(), dim=1) for member in self.members)
        return torch.log((total / len(self.members)).clamp_min(torch.finfo(torch.float32).eps))
