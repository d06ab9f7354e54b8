"""One image's answer.

:class:`Prediction` (mask at the original size, class, probabilities, Grad-CAM), how it is built from network outputs
(:func:`build_prediction`), and what an image without an answer gets (:class:`Failure`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from brain_mtl.classes import CLASS_NAMES
from brain_mtl.inference.preprocessing import Preprocessing
from brain_mtl.models.postprocess import binarize, gate_veto

__all__ = ["Failure", "NonFiniteOutputError", "Prediction", "build_prediction"]


@dataclass
class Prediction:
    """The prediction for one image, at the image's original size.

    Attributes:
        source: the file path, or ``array_<i>`` for in-memory images.
        image: ``(H, W, 3)`` uint8 RGB image as read.
        mask: ``(H, W)`` uint8 binary mask (1 = tumour).
        mask_probs: ``(H, W)`` float32 tumour probability per pixel.
        class_index: index of the most probable class.
        class_name: its name.
        class_probs: ``(C,)`` float32 class probabilities.
        class_names: names of all classes, in index order.
        gradcam: ``(H, W)`` float32 Grad-CAM map in ``[0, 1]``, when asked for.
        gradcam_class: the class the Grad-CAM map explains.
    """

    source: str
    image: np.ndarray
    mask: np.ndarray
    mask_probs: np.ndarray
    class_index: int
    class_name: str
    class_probs: np.ndarray
    class_names: tuple[str, ...] = tuple(CLASS_NAMES)
    gradcam: np.ndarray | None = None
    gradcam_class: int | None = None

    @property
    def probabilities(self) -> dict[str, float]:
        """Class name -> probability."""
        return {name: float(p) for name, p in zip(self.class_names, self.class_probs, strict=True)}

    @property
    def probability(self) -> float:
        """Probability of the predicted class."""
        return float(self.class_probs[self.class_index])

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)`` of the original image."""
        return int(self.mask.shape[0]), int(self.mask.shape[1])

    @property
    def mask_area(self) -> int:
        """Tumour pixels in the mask."""
        return int(self.mask.sum())


@dataclass
class Failure:
    """An input that could not be predicted (e.g. an unreadable file): its name and why."""

    source: str
    error: str


class NonFiniteOutputError(ValueError):
    """The network returned NaN or infinity for an image: its weights are broken, or it overflows on this input.

    Raised instead of writing ``nan`` probabilities or an all-empty mask (a NaN probability is never above the
    threshold). :meth:`Predictor.iter_predict` with ``errors="skip"`` turns it into a :class:`Failure`.
    """


def build_prediction(
    source: str,
    image: np.ndarray,
    mask_probs: Tensor | np.ndarray,
    class_probs: Tensor | np.ndarray,
    *,
    preprocessing: Preprocessing,
    mask_threshold: float,
    class_names: Sequence[str],
    mask_gate: bool = False,
    gate_min_area: int = 0,
    gradcam: Tensor | np.ndarray | None = None,
    gradcam_class: int | None = None,
) -> Prediction:
    """Network-resolution outputs of one image -> :class:`Prediction` at the original size (see ``Predictor``).

    Raises:
        NonFiniteOutputError: NaN or infinity in the class probabilities, the mask probabilities (on the image's
            pixels) or the Grad-CAM map; a finite network never gives them, so the image gets no prediction rather
            than ``nan`` probabilities or a silently empty mask.
    """
    orig_size = (int(image.shape[0]), int(image.shape[1]))
    probs_full = preprocessing.restore(mask_probs, orig_size)
    if isinstance(class_probs, Tensor):
        class_probs = class_probs.detach().float().cpu().numpy()
    class_probs = np.asarray(class_probs, dtype=np.float32).reshape(-1)
    for what, values in (("class probabilities", class_probs), ("mask probabilities", probs_full)):
        if not np.isfinite(values).all():
            raise NonFiniteOutputError(_non_finite_message(source, what, values))
    class_index = int(class_probs.argmax())
    mask = binarize(torch.from_numpy(probs_full), mask_threshold).numpy().astype(np.uint8)
    if mask_gate:
        # The gate counts the mask on the network's grid (postprocess), whatever the file's own size.
        grid = mask_probs if isinstance(mask_probs, Tensor) else torch.from_numpy(np.asarray(mask_probs, np.float32))
        area = binarize(grid.detach().float().cpu(), mask_threshold).sum().reshape(1)
        if bool(gate_veto(torch.from_numpy(class_probs).reshape(1, -1), area, gate_min_area)[0]):
            mask[:] = 0
    cam_full = None
    if gradcam is not None:
        cam_full = preprocessing.restore(gradcam, orig_size)
        if not np.isfinite(cam_full).all():
            raise NonFiniteOutputError(_non_finite_message(source, "Grad-CAM map", cam_full))
        cam_full = np.clip(cam_full, 0.0, 1.0)
    return Prediction(
        source=source,
        image=image,
        mask=mask,
        mask_probs=probs_full,
        class_index=class_index,
        class_name=class_names[class_index],
        class_probs=class_probs,
        class_names=tuple(class_names),
        gradcam=cam_full,
        gradcam_class=gradcam_class,
    )


def _non_finite_message(source: str, what: str, values: np.ndarray) -> str:
    bad = int((~np.isfinite(values)).sum())
    return (
        f"{source}: the network's {what} are not finite ({bad} of {values.size} values NaN or infinite): the "
        "model's weights are broken or it overflows on this input; no prediction written"
    )
