"""Test-time augmentation: the views of a batch, their exact inverses, and the averaging of probabilities.

The one implementation behind :class:`~brain_mtl.inference.Predictor` (``tta=``), ``predict-images --tta`` and the
evaluation report (``EvaluationReport(tta=...)``). Modes:

- ``none``: the image as it is (one forward pass).
- ``flip``: the image and its horizontal mirror (2 passes).
- ``d4``: the 8 symmetries of the square (the dihedral group D4): identity, horizontal flip, vertical flip, the
  rotations by 90, 180 and 270 degrees, the transpose (main diagonal) and the anti-transpose (other diagonal)
  (8 passes).

Each view's mask probabilities are mapped back onto the original pixels by the view's inverse, then mask
probabilities (``sigmoid``) and class probabilities (``softmax``) are averaged over the views; logits are never
averaged. A 90-degree rotation or a transpose turns an ``(H, W)`` input into ``(W, H)``: that is fine when ``H``
and ``W`` are both multiples of the network's ``output_stride`` (always the case for the square
``image_size x image_size`` inputs of the prediction and evaluation pipelines); other inputs are refused with a
``ValueError`` before anything runs. Each view is its own forward pass over the batch, so memory does not grow
with the number of views and non-square batches need no padding.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from brain_mtl.models.postprocess import probabilities
from brain_mtl.models.unet import UNetOutput

__all__ = [
    "TTA_MODES",
    "TTAMode",
    "View",
    "as_output",
    "output_stride_of",
    "parse_tta",
    "split_outputs",
    "tta_probs",
    "views",
]

TTAMode = Literal["none", "flip", "d4"]
TTA_MODES: tuple[str, ...] = ("none", "flip", "d4")
"""The test-time augmentation modes, from cheapest to most thorough."""


@dataclass(frozen=True)
class View:
    """One symmetry of the square: an optional horizontal flip, then ``quarter_turns`` rotations by 90 degrees.

    ``torch.rot90(x, k, dims=(-2, -1))`` rotates counter-clockwise as displayed (row 0 at the top). Every element
    of D4 is such a pair: ``(flip=False, k)`` are the rotations, ``(True, 0)`` the horizontal flip, ``(True, 2)``
    the vertical flip, ``(True, 1)`` the transpose and ``(True, 3)`` the anti-transpose.

    Attributes:
        name: a readable name (``identity``, ``hflip``, ``rot90``, ...).
        flip: mirror left-right first.
        quarter_turns: then rotate by ``90 * quarter_turns`` degrees.
    """

    name: str
    flip: bool = False
    quarter_turns: int = 0

    @property
    def swaps_sides(self) -> bool:
        """Whether the view turns an ``(H, W)`` image into a ``(W, H)`` one."""
        return self.quarter_turns % 2 == 1

    def apply(self, x: Tensor) -> Tensor:
        """The view of ``(..., H, W)`` images (a new tensor, or ``x`` itself for the identity)."""
        if self.flip:
            x = x.flip(-1)
        if self.quarter_turns % 4:
            x = torch.rot90(x, self.quarter_turns, dims=(-2, -1))
        return x

    def invert(self, y: Tensor) -> Tensor:
        """Map ``(..., h, w)`` maps predicted on the view back onto the original image's pixels."""
        if self.quarter_turns % 4:
            y = torch.rot90(y, -self.quarter_turns, dims=(-2, -1))
        if self.flip:
            y = y.flip(-1)
        return y


_IDENTITY = View("identity")
_HFLIP = View("hflip", flip=True)
_D4 = (
    _IDENTITY,
    _HFLIP,
    View("vflip", flip=True, quarter_turns=2),
    View("rot90", quarter_turns=1),
    View("rot180", quarter_turns=2),
    View("rot270", quarter_turns=3),
    View("transpose", flip=True, quarter_turns=1),
    View("anti_transpose", flip=True, quarter_turns=3),
)
_VIEWS: dict[str, tuple[View, ...]] = {"none": (_IDENTITY,), "flip": (_IDENTITY, _HFLIP), "d4": _D4}


def parse_tta(tta: bool | str | None) -> TTAMode:
    """A TTA setting as one of :data:`TTA_MODES`.

    None and False mean ``none``, True means ``flip`` (the library's former boolean ``tta``), a mode name stands for
    itself (case-insensitive).

    Raises:
        ValueError: an unknown mode name.
    """
    if tta is None or tta is False:
        return "none"
    if tta is True:
        return "flip"
    if isinstance(tta, str) and tta.strip().lower() in TTA_MODES:
        return tta.strip().lower()  # type: ignore[return-value]
    raise ValueError(f"tta must be one of {', '.join(TTA_MODES)} (or a bool: True = flip), got {tta!r}")


def views(tta: bool | str | None) -> tuple[View, ...]:
    """The views a TTA mode averages over, the identity first."""
    return _VIEWS[parse_tta(tta)]


def output_stride_of(model: Any) -> int | None:
    """The network's ``output_stride`` (input sides must be multiples of it), or None when it does not say.

    Read from the model itself, else from its ``model`` attribute (a ``BrainTumorModule``).
    """
    for candidate in (model, getattr(model, "model", None)):
        stride = getattr(candidate, "output_stride", None)
        if isinstance(stride, int) and not isinstance(stride, bool) and stride > 0:
            return stride
    return None


def split_outputs(output: Any) -> tuple[Tensor, Tensor]:
    """``(mask_logits, class_logits)`` of a network's output.

    The output is an object with those attributes (:class:`~brain_mtl.models.UNetOutput`) or a 2-sequence.
    """
    mask_logits = getattr(output, "mask_logits", None)
    class_logits = getattr(output, "class_logits", None)
    if mask_logits is None or class_logits is None:
        mask_logits, class_logits = output[0], output[1]
    return mask_logits, class_logits


def check_sides(height: int, width: int, tta: bool | str | None, output_stride: int | None) -> None:
    """Refuse a TTA mode whose views the network cannot take at this input size.

    Raises:
        ValueError: ``d4`` on an input whose sides are not both multiples of ``output_stride`` (a 90-degree
            rotation makes the width the height), naming the sizes.
    """
    mode = parse_tta(tta)
    if output_stride is None or not any(v.swaps_sides for v in views(mode)):
        return
    if height % output_stride or width % output_stride:
        raise ValueError(
            f"tta={mode!r} rotates the input by 90 degrees, so its height and width ({height} x {width}) must both "
            f"be multiples of the network's output stride {output_stride}; resize the input to a multiple of "
            f"{output_stride} (predict-images and the evaluation loader feed image_size x image_size) or use "
            "tta='flip'"
        )


def tta_probs(
    forward: Callable[[Tensor], Any] | nn.Module,
    images: Tensor,
    tta: bool | str | None = "none",
    *,
    output_stride: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Mask and class probabilities of a batch, averaged over the views of a TTA mode.

    Args:
        forward: the network (or any callable) on ``(B, C, h, w)`` images; returns mask logits ``(B, 1, h, w)``
            and class logits ``(B, K)`` (a :class:`~brain_mtl.models.UNetOutput` or a 2-tuple). It runs once per
            view, under the caller's grad mode and autocast.
        images: ``(B, C, H, W)`` network input.
        tta: ``none``, ``flip`` or ``d4`` (see the module docstring); a bool as in :func:`parse_tta`.
        output_stride: the network's output stride, to refuse ``d4`` on inputs it cannot rotate; default
            :func:`output_stride_of` ``(forward)``.

    Returns:
        ``mask_probs (B, 1, H, W)`` and ``class_probs (B, K)``, float32: the mean over the views of
        ``sigmoid(mask_logits)`` (each mapped back to the original orientation) and of ``softmax(class_logits)``.
        With ``none`` they are exactly ``sigmoid`` and ``softmax`` of one forward pass.

    Raises:
        ValueError: an unknown mode, or ``d4`` on an input whose sides are not multiples of ``output_stride``.
    """
    mode = parse_tta(tta)
    stride = output_stride if output_stride is not None else output_stride_of(forward)
    check_sides(int(images.shape[-2]), int(images.shape[-1]), mode, stride)
    chosen = views(mode)
    mask_total: Tensor | None = None
    class_total: Tensor | None = None
    for view in chosen:
        mask_logits, class_logits = split_outputs(forward(view.apply(images)))
        mask, probs = probabilities(mask_logits, class_logits)
        mask = view.invert(mask)
        mask_total = mask if mask_total is None else mask_total + mask
        class_total = probs if class_total is None else class_total + probs
    assert mask_total is not None and class_total is not None
    if len(chosen) > 1:
        mask_total, class_total = mask_total / len(chosen), class_total / len(chosen)
    return mask_total, class_total


def tta_output(forward: Callable[[Tensor], Any], images: Tensor, tta: bool | TTAMode) -> Any:
    """The averaged views of :func:`tta_probs` as a network output: ``UNetOutput(logit(p_mask), log(p_class))``.

    Losses and metrics computed on it score the averaged probabilities (``sigmoid`` and ``softmax`` of these logits
    give them back).
    """
    return as_output(*tta_probs(forward, images, tta))


def as_output(mask_probs: Tensor, class_probs: Tensor) -> UNetOutput:
    """Probabilities as a network output: ``UNetOutput(logit(p_mask), log(p_class))``.

    For averages (of views, or of networks): ``sigmoid`` and ``softmax`` of it give the probabilities back.
    """
    eps = torch.finfo(mask_probs.dtype).eps
    return UNetOutput(torch.logit(mask_probs, eps), torch.log(class_probs.clamp_min(eps)))
