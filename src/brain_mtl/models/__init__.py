"""Plain PyTorch models (no Lightning, no data code): the joint segmentation + classification U-Net."""

from brain_mtl.models.blocks import (
    AttentionGate,
    ClassificationHead,
    DoubleConv,
    DownBlock,
    PassThroughGate,
    UpBlock,
    UpsampleBlock,
)
from brain_mtl.models.encoders import REFERENCE_ENCODER, TimmEncoder
from brain_mtl.models.unet import UNet, UNetOutput

__all__ = [
    "REFERENCE_ENCODER",
    "AttentionGate",
    "ClassificationHead",
    "DoubleConv",
    "DownBlock",
    "PassThroughGate",
    "TimmEncoder",
    "UNet",
    "UNetOutput",
    "UpBlock",
    "UpsampleBlock",
]
