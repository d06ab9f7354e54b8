"""Building blocks of the U-Net: double conv, down and up stages, skip gates and the classification head.

Each block is a plain ``nn.Module`` that knows nothing about the network it sits in; ``unet.py`` wires them.
Layer order inside the blocks follows the reference notebook (see ``reference.py``), so that its weights load.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = [
    "AttentionGate",
    "ClassificationHead",
    "DoubleConv",
    "DownBlock",
    "PassThroughGate",
    "UpBlock",
    "UpsampleBlock",
]


class DoubleConv(nn.Sequential):
    """Two ``Conv3x3 -> BatchNorm -> ReLU`` layers; the spatial size is kept.

    The convolutions keep their bias, as in the reference notebook (redundant before BatchNorm, but needed
    for its weights to load parameter for parameter).

    Args:
        in_channels: Channels of the input.
        out_channels: Channels of both convolutions' outputs.

    Shape:
        ``(B, in_channels, H, W) -> (B, out_channels, H, W)``.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class DownBlock(nn.Sequential):
    """One encoder stage: 2x2 max-pool, then a :class:`DoubleConv`.

    Args:
        in_channels: Channels of the input.
        out_channels: Channels of the output.

    Shape:
        ``(B, in_channels, H, W) -> (B, out_channels, H / 2, W / 2)``.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(nn.MaxPool2d(kernel_size=2), DoubleConv(in_channels, out_channels))


class PassThroughGate(nn.Module):
    """The skip gate of a U-Net without attention: returns the skip feature unchanged.

    It has the same call signature as :class:`AttentionGate`, so the decoder code is the same with or
    without attention.
    """

    def forward(self, skip: Tensor, gate: Tensor) -> Tensor:
        """Return ``skip`` as is; ``gate`` is ignored.

        Args:
            skip: Encoder feature, ``(B, C, H, W)``.
            gate: Decoder feature, unused.

        Returns:
            ``skip``, ``(B, C, H, W)``.
        """
        return skip


class AttentionGate(nn.Module):
    """Additive attention gate on a skip connection (Oktay et al., 2018, "Attention U-Net").

    ``psi = sigmoid(BN(conv1x1(relu(BN(conv1x1(gate)) + BN(conv1x1(skip))))))`` and the output is
    ``skip * psi``: one weight in ``(0, 1)`` per pixel, shared by all channels of the skip.

    Args:
        skip_channels: Channels of the skip (encoder) feature.
        gate_channels: Channels of the gating (decoder) feature.
        inter_channels: Channels of the intermediate space where the two are added.

    Shape:
        ``skip (B, skip_channels, H, W)``, ``gate (B, gate_channels, H, W) -> (B, skip_channels, H, W)``.
    """

    def __init__(self, skip_channels: int, gate_channels: int, inter_channels: int) -> None:
        super().__init__()
        # Attribute order and names (gate before skip) decide the state-dict order; reference.py maps them
        # to the notebook's W_g / W_x / psi.
        self.gate_proj = nn.Sequential(
            nn.Conv2d(gate_channels, inter_channels, kernel_size=1), nn.BatchNorm2d(inter_channels)
        )
        self.skip_proj = nn.Sequential(
            nn.Conv2d(skip_channels, inter_channels, kernel_size=1), nn.BatchNorm2d(inter_channels)
        )
        self.psi = nn.Sequential(nn.Conv2d(inter_channels, 1, kernel_size=1), nn.BatchNorm2d(1))

    def attention_map(self, skip: Tensor, gate: Tensor) -> Tensor:
        """The gate's weights.

        Args:
            skip: Encoder feature, ``(B, skip_channels, H, W)``.
            gate: Decoder feature, ``(B, gate_channels, H, W)``.

        Returns:
            Weights in ``(0, 1)``, ``(B, 1, H, W)``.
        """
        return torch.sigmoid(self.psi(torch.relu(self.gate_proj(gate) + self.skip_proj(skip))))

    def forward(self, skip: Tensor, gate: Tensor) -> Tensor:
        """Weight the skip feature by the attention map.

        Args:
            skip: Encoder feature, ``(B, skip_channels, H, W)``.
            gate: Decoder feature, ``(B, gate_channels, H, W)``.

        Returns:
            The gated skip, ``(B, skip_channels, H, W)``.
        """
        return skip * self.attention_map(skip, gate)


class UpBlock(nn.Module):
    """One decoder stage: 2x2 transposed conv, skip gate, concatenation ``[skip, upsampled]``, double conv.

    Args:
        in_channels: Channels of the incoming (deeper) decoder feature.
        skip_channels: Channels of the encoder skip feature; also the channels of the upsampled feature and
            of this block's output.
        attention: Gate the skip with an :class:`AttentionGate` (gating signal: the upsampled feature;
            intermediate channels: half of the skip's). Without it the skip passes unchanged.

    Shape:
        ``x (B, in_channels, H, W)``, ``skip (B, skip_channels, 2H, 2W) -> (B, skip_channels, 2H, 2W)``.
    """

    def __init__(self, in_channels: int, skip_channels: int, attention: bool = False) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, skip_channels, kernel_size=2, stride=2)
        self.gate: nn.Module = (
            AttentionGate(skip_channels, skip_channels, max(skip_channels // 2, 1)) if attention else PassThroughGate()
        )
        self.conv = DoubleConv(2 * skip_channels, skip_channels)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        """Upsample ``x``, gate ``skip`` with it, concatenate ``[skip, upsampled]`` and convolve.

        Args:
            x: Deeper decoder feature, ``(B, in_channels, H, W)``.
            skip: Encoder feature, ``(B, skip_channels, 2H, 2W)``.

        Returns:
            ``(B, skip_channels, 2H, 2W)``.
        """
        upsampled = self.up(x)
        return self.conv(torch.cat([self.gate(skip, upsampled), upsampled], dim=1))


class UpsampleBlock(nn.Sequential):
    """A decoder stage without a skip: 2x2 transposed conv, then double conv.

    It brings the decoder of an encoder whose first feature map is already downsampled (stride 2 or 4, as in
    ResNet or ConvNeXt) back to full resolution.

    Args:
        in_channels: Channels of the incoming decoder feature.
        out_channels: Channels of the output.

    Shape:
        ``(B, in_channels, H, W) -> (B, out_channels, 2H, 2W)``.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2),
            DoubleConv(out_channels, out_channels),
        )


class ClassificationHead(nn.Module):
    """Global average pool, then ``Linear -> ReLU -> Dropout -> Linear``.

    Args:
        in_channels: Channels of the input feature map (the U-Net's bottleneck).
        num_classes: Number of classes.
        hidden: Width of the hidden layer.
        dropout: Dropout probability before the last layer.

    Shape:
        ``(B, in_channels, H, W) -> (B, num_classes)`` (logits).
    """

    def __init__(self, in_channels: int, num_classes: int, hidden: int = 256, dropout: float = 0.6) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.mlp = nn.Sequential(
            nn.Linear(in_channels, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, features: Tensor) -> Tensor:
        """Pool and classify.

        Args:
            features: ``(B, in_channels, H, W)``.

        Returns:
            Class logits, ``(B, num_classes)``.
        """
        return self.mlp(torch.flatten(self.pool(features), 1))
