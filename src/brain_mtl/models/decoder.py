"""The U-Net decoder, built from an encoder's channel list."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from brain_mtl.models.blocks import UpBlock

__all__ = ["UNetDecoder"]


class UNetDecoder(nn.ModuleList):
    """One :class:`UpBlock` per skip connection, deepest first.

    Each stage: transposed conv, skip gate, concatenation ``[skip, upsampled]``, double conv. A ``ModuleList``, so
    its weights keep the names ``decoder.<i>....`` of every checkpoint written before it was a class.

    Args:
        channels: the encoder's feature channels, shallowest first (``encoder.channels``).
        attention: put attention gates on the skip connections (Attention U-Net).

    Attributes:
        out_channels: channels of the output, the shallowest feature map's.
    """

    def __init__(self, channels: Sequence[int], attention: bool = False) -> None:
        channels = list(channels)
        if len(channels) < 2:
            raise ValueError(f"UNetDecoder needs at least two feature maps, got channels {channels}")
        super().__init__(
            [
                UpBlock(c_in, c_skip, attention=attention)
                for c_in, c_skip in zip(channels[:0:-1], channels[-2::-1], strict=True)
            ]
        )
        self.out_channels = channels[0]

    def forward(self, features: Sequence[Tensor]) -> Tensor:  # type: ignore[override]
        """The encoder's features (shallowest first) -> the decoded map at the shallowest feature's resolution."""
        x = features[-1]
        for stage, skip in zip(self, reversed(features[:-1]), strict=True):
            x = stage(x, skip)
        return x
