"""albumentations pipelines per split, ImageNet normalisation, and the helpers to undo them for plotting.

Every pipeline starts with the same resize step (:func:`build_resize`): a square ``Resize`` by default, or, with
``keep_aspect=True``, ``LongestMaxSize`` followed by a centred black ``PadIfNeeded`` (659 BRISC images are not
square, e.g. 216x369, and a plain resize distorts them). The training pipeline then adds horizontal flips (brain
MRI is left-right symmetric enough; vertical flips are not anatomical), small rotations and mild intensity
changes, with a strength chosen by ``augment``:

=========  ======  ==========  =====================  ============================================
augment    flip    rotate      brightness/contrast     extra
=========  ======  ==========  =====================  ============================================
none       -       -           -                      (the evaluation pipeline)
light      0.5     +-7 deg     +-0.05, p 0.3          -
default    0.5     +-15 deg    +-0.1, p 0.5           gamma 90-110, p 0.3
strong     0.5     +-20 deg    +-0.2, p 0.7           scale 0.9-1.1, shift 5%, gamma 80-120, noise
=========  ======  ==========  =====================  ============================================

The reference notebook used Resize + HorizontalFlip + Rotate(15) + ImageNet Normalize, i.e. ``default`` without
the intensity changes. Masks follow every geometric step with nearest-neighbour interpolation.
"""

from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A
import cv2
import numpy as np
import torch

from brain_mtl.data.io import read_image, read_mask  # noqa: F401  (re-exported: one place to import from)
from brain_mtl.models.encoders import PIPELINE_MEAN, PIPELINE_STD
from brain_mtl.models.postprocess import to_original_size  # noqa: F401  (the inverse of build_resize, re-exported)

IMAGENET_MEAN: tuple[float, float, float] = PIPELINE_MEAN
"""Per-channel mean of the normalisation (RGB, 0-1 scale): :data:`brain_mtl.models.encoders.PIPELINE_MEAN`."""

IMAGENET_STD: tuple[float, float, float] = PIPELINE_STD
"""Per-channel standard deviation (RGB, 0-1 scale): :data:`brain_mtl.models.encoders.PIPELINE_STD`."""

AUGMENT_LEVELS: tuple[str, ...] = ("none", "light", "default", "strong")
"""Accepted values of ``augment``."""


def build_resize(image_size: int, keep_aspect: bool = False) -> A.Compose:
    """The resize step every pipeline starts with (also what the image cache stores).

    Args:
        image_size: output side in pixels (the output is ``image_size`` x ``image_size``).
        keep_aspect: scale the longest side to ``image_size`` and pad the rest with black, instead of
            stretching to a square.

    Returns:
        A pipeline taking ``image`` (and ``mask``) numpy arrays.
    """
    return A.Compose(_resize_ops(image_size, keep_aspect))


def _resize_ops(image_size: int, keep_aspect: bool) -> list[A.BasicTransform]:
    if image_size < 8:
        raise ValueError(f"image_size must be at least 8 pixels, got {image_size}")
    if keep_aspect:
        return [
            A.LongestMaxSize(max_size=image_size, interpolation=cv2.INTER_AREA),
            A.PadIfNeeded(
                image_size, image_size, position="center", border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=0
            ),
        ]
    return [A.Resize(image_size, image_size, interpolation=cv2.INTER_AREA)]


def _augment_ops(augment: str) -> list[A.BasicTransform]:
    border = {"border_mode": cv2.BORDER_CONSTANT, "fill": 0, "fill_mask": 0}
    if augment == "none":
        return []
    if augment == "light":
        return [
            A.HorizontalFlip(p=0.5),
            A.Rotate(limit=7, p=0.5, **border),
            A.RandomBrightnessContrast(brightness_limit=0.05, contrast_limit=0.05, p=0.3),
        ]
    if augment == "default":
        return [
            A.HorizontalFlip(p=0.5),
            A.Rotate(limit=15, p=0.5, **border),
            A.RandomBrightnessContrast(brightness_limit=0.1, contrast_limit=0.1, p=0.5),
            A.RandomGamma(gamma_limit=(90, 110), p=0.3),
        ]
    if augment == "strong":
        return [
            A.HorizontalFlip(p=0.5),
            A.Affine(rotate=(-20, 20), scale=(0.9, 1.1), translate_percent=(-0.05, 0.05), p=0.8, **border),
            A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=0.7),
            A.RandomGamma(gamma_limit=(80, 120), p=0.5),
            A.GaussNoise(std_range=(0.01, 0.04), p=0.2),
        ]
    raise ValueError(f"augment must be one of {AUGMENT_LEVELS}, got {augment!r}")


def build_transforms(split: str, image_size: int, keep_aspect: bool = False, augment: str = "default") -> A.Compose:
    """The albumentations pipeline of a split: resize, (train only) augmentation, ImageNet normalisation.

    Args:
        split: ``"train"`` augments; ``"val"``, ``"test"``, ``"predict"`` (anything else) only resize and normalise.
        image_size: output side in pixels.
        keep_aspect: longest side to ``image_size`` + centred black padding instead of a square resize.
        augment: ``"none"``, ``"light"``, ``"default"`` or ``"strong"`` (training only; see the module docs).

    Returns:
        A pipeline; call it as ``pipeline(image=rgb_uint8, mask=mask_uint8)`` and get ``float32`` ``(H, W, 3)``
        normalised ``image`` and ``uint8`` ``mask`` back.
    """
    if augment not in AUGMENT_LEVELS:
        raise ValueError(f"augment must be one of {AUGMENT_LEVELS}, got {augment!r}")
    ops = _resize_ops(image_size, keep_aspect)
    if split == "train":
        ops += _augment_ops(augment)
    ops.append(A.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD, max_pixel_value=255.0))
    return A.Compose(ops)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """``(H, W, 3)`` float array -> ``(3, H, W)`` float32 tensor."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32))


def denormalize(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """Undo the ImageNet normalisation of one image for plotting.

    Args:
        image: ``(3, H, W)`` normalised image (tensor or array).

    Returns:
        ``(H, W, 3)`` uint8 RGB.
    """
    if isinstance(image, torch.Tensor):
        image = image.detach().float().cpu().numpy()
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"denormalize expects one (3, H, W) image, got shape {tuple(image.shape)}")
    mean = np.asarray(IMAGENET_MEAN, dtype=np.float32)[:, None, None]
    std = np.asarray(IMAGENET_STD, dtype=np.float32)[:, None, None]
    rgb = (image * std + mean) * 255.0
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8).transpose(1, 2, 0).copy()
