"""Plain PyTorch models (no Lightning, no data code): the joint segmentation + classification U-Net."""

from brain_mtl.models.blocks import (
    AttentionGate,
    ClassificationHead,
    DoubleConv,
    DownBlock,
    PassThroughGate,
    UpBlock,
)
from brain_mtl.models.unet import UNet, UNetOutput

__all__ = [
    "AttentionGate",
    "ClassificationHead",
    "DoubleConv",
    "DownBlock",
    "PassThroughGate",
    "UNet",
    "UNetOutput",
    "UpBlock",
]
