"""Several networks as one: the average of their probabilities, returned as the logits of that average.

With a temperature (``python -m brain_mtl calibrate``) the class output is temperature-scaled: one member with a
temperature is a calibrated network.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

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
        temperature: the class output is ``log(p) / temperature`` (temperature scaling: ``softmax`` of it is
            ``softmax(logits / T)`` for one member); 1 leaves the averaged probabilities as they are.
    """

    def __init__(self, members: Sequence[nn.Module], temperature: float = 1.0) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        if not (math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"the temperature must be a positive number, got {temperature}")
        self.temperature = float(temperature)
        """Divides the class log-probabilities (1: none)."""
        self.members = nn.ModuleList(members)
        strides = [int(getattr(member, "output_stride", 1)) for member in members]
        self.output_stride = math.lcm(*strides)
        """Input sides must be multiples of every member's stride."""

    def forward(self, x: Tensor) -> UNetOutput:
        """Averaged probabilities of ``(B, 3, H, W)`` images, as logits (see the class)."""
        mask_total, class_logs = None, []
        for member in self.members:
            mask_logits, class_logits = member(x)
            mask_probs = torch.sigmoid(mask_logits.float())
            mask_total = mask_probs if mask_total is None else mask_total + mask_probs
            class_logs.append(torch.log_softmax(class_logits.float(), dim=1))
        mask_mean = mask_total / len(self.members)
        return UNetOutput(torch.logit(mask_mean, torch.finfo(mask_mean.dtype).eps), self._class_output(class_logs))

    def classify(self, x: Tensor) -> Tensor:
        """The class output of :meth:`forward` from the encoders and heads only."""
        return self._class_output([torch.log_softmax(m.classify(x).float(), dim=1) for m in self.members])

    def _class_output(self, log_probs: list[Tensor]) -> Tensor:
        """``log`` of the mean of the members' class probabilities, over the temperature.

        Computed in log space (``logsumexp``), so that a confident member's tiny probabilities are not clamped: with
        a temperature they would come back enlarged.
        """
        mean = torch.logsumexp(torch.stack(log_probs), dim=0) - math.log(len(log_probs))
        return mean if self.temperature == 1.0 else mean / self.temperature
