"""From network outputs to answers: probabilities, the mask threshold, the no-tumour gate, the original size.

The only place where these steps are written; the task module, the TensorBoard callbacks, the evaluation report,
the predictor and the exported model's metadata all call it, so that a prediction means the same everywhere:

1. :func:`probabilities`: ``sigmoid`` of the mask logits and ``softmax`` of the class logits, in float32.
2. :func:`binarize`: a pixel is tumour when its probability is strictly above ``mask_threshold``.
3. :func:`gate_veto` / :func:`apply_gate`: the mask gate. A predicted mask is emptied when the class head's most
   probable class is ``no_tumor``, or when the mask has fewer than ``min_area`` pixels (0: the class veto only).
   Areas are counted on the network's grid, so the gate does not depend on the file's own size.
4. :func:`to_original_size`: a network-grid map back onto the file's pixels (letterbox padding cut off first).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from brain_mtl.classes import NO_TUMOR

__all__ = [
    "Postprocessed",
    "apply_gate",
    "binarize",
    "gate_veto",
    "postprocess",
    "probabilities",
    "to_original_size",
]


class Postprocessed(NamedTuple):
    """Network-grid answers for a batch (B images, K classes).

    Attributes:
        mask_probs: (B, 1, H, W) float32 tumour probabilities.
        class_probs: (B, K) float32 class probabilities.
        masks: (B, 1, H, W) bool predicted masks, after the gate when it was applied.
        class_index: (B,) most probable class.
        vetoed: (B,) bool, True where the gate emptied a non-empty mask (all False without the gate).
    """

    mask_probs: Tensor
    class_probs: Tensor
    masks: Tensor
    class_index: Tensor
    vetoed: Tensor


def probabilities(mask_logits: Tensor, class_logits: Tensor) -> tuple[Tensor, Tensor]:
    """``sigmoid(mask_logits)`` (B, 1, H, W) and ``softmax(class_logits)`` (B, K), computed in float32."""
    return torch.sigmoid(mask_logits.float()), torch.softmax(class_logits.float(), dim=1)


def binarize(mask_probs: Tensor, threshold: float = 0.5) -> Tensor:
    """Predicted mask: ``mask_probs > threshold`` (strictly), as bool, same shape."""
    return mask_probs > threshold


def gate_veto(class_probs: Tensor, mask_area: Tensor, min_area: int = 0, no_tumor: int = NO_TUMOR) -> Tensor:
    """Which masks the gate empties: the most probable class is ``no_tumor``, or the mask is under ``min_area``.

    Args:
        class_probs: (B, K) class probabilities (or logits: only the argmax is used).
        mask_area: (B,) predicted mask pixels on the network's grid.
        min_area: smallest mask kept, in pixels (0: the class veto only).
        no_tumor: index of the healthy class; a head with fewer classes than that index never vetoes by class.

    Returns:
        (B,) bool.
    """
    by_class = (
        class_probs.argmax(dim=1) == no_tumor
        if class_probs.shape[1] > no_tumor
        else torch.zeros_like(mask_area, dtype=torch.bool)
    )
    return by_class | (mask_area < min_area)


def apply_gate(masks: Tensor, class_probs: Tensor, min_area: int = 0, no_tumor: int = NO_TUMOR) -> Tensor:
    """Empty the masks that :func:`gate_veto` vetoes; ``masks`` is (B, 1, H, W) or (B, H, W) bool."""
    veto = gate_veto(class_probs, masks.flatten(1).sum(dim=1), min_area, no_tumor)
    return masks & ~veto.view(-1, *([1] * (masks.dim() - 1)))


def postprocess(
    mask_logits: Tensor,
    class_logits: Tensor,
    threshold: float = 0.5,
    gate: bool = False,
    gate_min_area: int = 0,
    no_tumor: int = NO_TUMOR,
) -> Postprocessed:
    """All network-grid steps at once (see the module docstring); inputs are logits."""
    mask_probs, class_probs = probabilities(mask_logits, class_logits)
    return postprocess_probs(mask_probs, class_probs, threshold, gate, gate_min_area, no_tumor)


def postprocess_probs(
    mask_probs: Tensor,
    class_probs: Tensor,
    threshold: float = 0.5,
    gate: bool = False,
    gate_min_area: int = 0,
    no_tumor: int = NO_TUMOR,
) -> Postprocessed:
    """As :func:`postprocess`, from probabilities (e.g. averaged over test-time augmentation views)."""
    masks = binarize(mask_probs, threshold)
    if gate:
        area = masks.flatten(1).sum(dim=1)
        veto = gate_veto(class_probs, area, gate_min_area, no_tumor)
        vetoed = veto & (area > 0)
        masks = masks & ~veto.view(-1, *([1] * (masks.dim() - 1)))
    else:
        vetoed = torch.zeros(masks.shape[0], dtype=torch.bool, device=masks.device)
    return Postprocessed(mask_probs, class_probs, masks, class_probs.argmax(dim=1), vetoed)


def to_original_size(
    prob_map: np.ndarray | Tensor,
    orig_size: tuple[int, int] | Tensor,
    keep_aspect: bool = False,
    interpolation: int | None = None,
) -> np.ndarray:
    """Map a network-grid map (probabilities, a heat map, an overlay) onto the original image's pixels.

    The one inverse of the data pipeline's resize step (:func:`brain_mtl.data.transforms.build_resize`): with
    ``keep_aspect`` the centred letterbox padding is cut off before resizing.

    Args:
        prob_map: ``(S, S)``, ``(1, S, S)`` or ``(S, S, C)`` map on the network's square grid (array or tensor).
        orig_size: ``(H, W)`` of the original image (the sample's ``"orig_size"``).
        keep_aspect: the pipeline letterboxed the image.
        interpolation: OpenCV interpolation; default bilinear (``cv2.INTER_NEAREST`` for label maps).

    Returns:
        ``(H, W)`` or ``(H, W, C)`` array: float32 for tensors and float arrays, else the input's dtype.
        Threshold probabilities with :func:`binarize` at the original size, so that the mask's edge follows the
        interpolated probabilities rather than blocky network pixels.
    """
    import cv2  # OpenCV only where a map is resized: the rest of this module is torch alone

    if isinstance(prob_map, Tensor):
        prob_map = prob_map.detach().float().cpu().numpy()
    array = np.asarray(prob_map)
    if array.dtype.kind == "f" or array.dtype == np.bool_:
        array = array.astype(np.float32, copy=False)
    if array.ndim == 3 and array.shape[0] == 1 and array.shape[2] != 1:
        array = array[0]
    array = np.ascontiguousarray(array)
    if isinstance(orig_size, Tensor):
        orig_size = tuple(orig_size.tolist())
    height, width = int(orig_size[0]), int(orig_size[1])
    side = array.shape[0]
    if keep_aspect:
        scale = side / max(height, width)
        inner_h, inner_w = max(1, round(height * scale)), max(1, round(width * scale))
        top, left = (side - inner_h) // 2, (array.shape[1] - inner_w) // 2
        array = array[top : top + inner_h, left : left + inner_w]
    return cv2.resize(
        array, (width, height), interpolation=cv2.INTER_LINEAR if interpolation is None else interpolation
    )
