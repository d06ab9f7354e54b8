"""Plain PyTorch models (no Lightning, no data code): the joint segmentation + classification U-Net.

Beside the network: :mod:`~brain_mtl.models.postprocess` (from its outputs to answers: probabilities, mask, gate,
original size) and :mod:`~brain_mtl.models.tta` (test-time augmentation over its outputs).
"""

from brain_mtl.models.blocks import (
    AttentionGate,
    ClassificationHead,
    DoubleConv,
    DownBlock,
    PassThroughGate,
    UpBlock,
    UpsampleBlock,
)
from brain_mtl.models.decoder import UNetDecoder
from brain_mtl.models.encoders import PIPELINE_MEAN, PIPELINE_STD, REFERENCE_ENCODER, ReferenceEncoder, TimmEncoder
from brain_mtl.models.ensemble import EnsembleNet
from brain_mtl.models.unet import UNet, UNetConfig, UNetOutput, config_of

__all__ = [
    "PIPELINE_MEAN",
    "PIPELINE_STD",
    "REFERENCE_ENCODER",
    "AttentionGate",
    "ClassificationHead",
    "DoubleConv",
    "DownBlock",
    "EnsembleNet",
    "PassThroughGate",
    "ReferenceEncoder",
    "TimmEncoder",
    "UNet",
    "UNetConfig",
    "UNetDecoder",
    "UNetOutput",
    "UpBlock",
    "UpsampleBlock",
    "config_of",
]
