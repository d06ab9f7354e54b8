"""Checkpoints whose outputs are known, and synthetic scans, for the app tests."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from tests.fixtures import write_checkpoint

GLIOMA_LOGITS = (2.0, 1.0, 0.0, -1.0)
"""Class logits of the glioma checkpoint: softmax 64.4%, 23.7%, 8.7%, 3.2%."""
NO_TUMOR_LOGITS = (0.0, 0.0, 0.0, 3.0)
"""Class logits of the no-tumour checkpoint."""
MASK_LOGIT = 3.0
"""Mask logit of every pixel: probability sigmoid(3) = 0.953, so every pixel is tumour below that threshold."""


def softmax(logits) -> list[float]:
    values = np.exp(np.asarray(logits, dtype=np.float64) - max(logits))
    return list(values / values.sum())


def write_fixed_checkpoint(
    path: Path, class_logits=GLIOMA_LOGITS, mask_logit: float = MASK_LOGIT, image_size: int = 32
) -> Path:
    """A Lightning checkpoint of a tiny UNet whose heads ignore the image: fixed class logits and mask logit.

    The last layer of each head has zero weights, so its bias is the output; everything before stays random, so
    Grad-CAM and the rest of the network run as usual. The datamodule's hyperparameters record synthetic training data.
    """

    def fixed_heads(module) -> None:
        net = module.model
        net.segmentation_head.weight.zero_()
        net.segmentation_head.bias.fill_(mask_logit)
        net.classification_head.mlp[3].weight.zero_()
        net.classification_head.mlp[3].bias.copy_(torch.tensor(class_logits))

    return write_checkpoint(
        path,
        edit=fixed_heads,
        datamodule_hparams={
            "image_size": image_size,
            "keep_aspect": False,
            "root": None,
            "synthetic_root": "data/synthetic",
            "synthetic_train": 500,
        },
        epoch=2,
        global_step=30,
    )


def synthetic_scan(label: int = 0, height: int = 384, width: int = 512, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic gray slice ``(H, W)`` uint8 and its tumour mask, from the library's generator."""
    from brain_mtl.data import synthesize_slice

    return synthesize_slice(np.random.default_rng(seed), label, "ax", height, width)


def write_scan(path: Path, image: np.ndarray) -> Path:
    """Write a gray or RGB uint8 scan (PNG or JPEG by the suffix); RGB arrays are given in RGB order."""
    pixels = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    ok, encoded = cv2.imencode(path.suffix, pixels)
    assert ok
    path.write_bytes(encoded.tobytes())
    return path
