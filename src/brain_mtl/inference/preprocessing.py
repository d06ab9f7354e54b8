"""From image to network input and back, with the data package's evaluation transform and its inverse."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from torch import Tensor

from brain_mtl.data.io import to_uint8
from brain_mtl.data.transforms import build_transforms, to_tensor
from brain_mtl.models.encoders import PIPELINE_MEAN, PIPELINE_STD
from brain_mtl.models.postprocess import to_original_size

__all__ = ["DEFAULT_IMAGE_SIZE", "Preprocessing", "as_rgb_uint8"]

DEFAULT_IMAGE_SIZE = 256
"""Network input side used when neither the checkpoint nor the caller says (the reference notebook's size)."""


@dataclass(frozen=True)
class Preprocessing:
    """How images become network input, and how network outputs go back onto the image's pixels.

    Both directions are the data package's own: ``brain_mtl.data.transforms.build_transforms("test", ...)``
    (square resize, or letterbox with ``keep_aspect``, then ImageNet normalisation) and ``to_original_size``
    (crop the letterbox padding, resize), so prediction sees exactly what validation and test saw.

    Args:
        image_size: side of the square network input.
        keep_aspect: letterbox (longest side to ``image_size``, centred black padding) instead of stretching.
    """

    image_size: int = DEFAULT_IMAGE_SIZE
    keep_aspect: bool = False

    @property
    def mean(self) -> tuple[float, float, float]:
        """Normalisation mean per RGB channel (of 0-1 pixel values)."""
        return PIPELINE_MEAN

    @property
    def std(self) -> tuple[float, float, float]:
        """Normalisation standard deviation per RGB channel (of 0-1 pixel values)."""
        return PIPELINE_STD

    @property
    def transform(self) -> Any:
        """The albumentations evaluation pipeline."""
        return _eval_transform(self.image_size, self.keep_aspect)

    def __call__(self, image: np.ndarray) -> Tensor:
        """``(H, W, 3)`` uint8 RGB -> ``(3, image_size, image_size)`` float32 network input."""
        return to_tensor(self.transform(image=image)["image"])

    def restore(self, prob_map: np.ndarray | Tensor, orig_size: tuple[int, int]) -> np.ndarray:
        """Map a network-resolution map (probabilities, a heat map) back onto the original image's pixels.

        Args:
            prob_map: ``(image_size, image_size)`` (or ``(1, S, S)``) map.
            orig_size: ``(H, W)`` of the original image.

        Returns:
            ``(H, W)`` float32 map: letterbox padding cut off, then bilinearly resized.
        """
        return to_original_size(prob_map, orig_size, keep_aspect=self.keep_aspect)


@functools.lru_cache(maxsize=8)
def _eval_transform(image_size: int, keep_aspect: bool) -> Any:
    return build_transforms("test", image_size, keep_aspect=keep_aspect)


def as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """An in-memory image (gray, RGB or RGBA, any dtype) as ``(H, W, 3)`` uint8 RGB (arrays are taken as RGB)."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise ValueError(f"an image array must be (H, W), (H, W, 3) or (H, W, 4); got shape {image.shape}")
    image = to_uint8(image)  # the file reader's scaling: the image's own range to 0-255
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    return np.ascontiguousarray(image[:, :, :3])
