"""The joint U-Net: one encoder, a segmentation decoder and a classification head on the bottleneck."""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from brain_mtl.classes import NUM_CLASSES
from brain_mtl.models import reference
from brain_mtl.models.blocks import ClassificationHead, UpsampleBlock
from brain_mtl.models.decoder import UNetDecoder
from brain_mtl.models.encoders import REFERENCE_ENCODER, ReferenceEncoder, TimmEncoder

__all__ = ["UNet", "UNetConfig", "UNetOutput", "config_of"]


@dataclasses.dataclass(frozen=True)
class UNetConfig(Mapping[str, Any]):
    """What builds a :class:`UNet`: its constructor's arguments (the architecture; weights are not part of it).

    A typed, frozen record that is also a read-only mapping, so ``UNet(**model.config)`` rebuilds the network (with
    fresh weights) and ``dict(model.config)`` is the plain form that checkpoints, exports and the app store.
    :meth:`from_mapping` reads that form back, ignoring keys that are not the network's (a task's hyperparameters).
    """

    in_channels: int = 3
    num_classes: int = NUM_CLASSES
    base_channels: int = 64
    depth: int = 4
    attention: bool = False
    classifier_hidden: int = 256
    classifier_dropout: float = 0.6
    encoder: str = REFERENCE_ENCODER

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> UNetConfig:
        """The config from a mapping that holds its keys (and maybe others, ignored); missing keys get defaults."""
        names = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in names})

    def arguments(self) -> dict[str, Any]:
        """The arguments that apply to this network: ``base_channels`` and ``depth`` only for the reference encoder.

        ``UNet(**config.arguments())`` builds the same network as ``UNet(**config)``; this is the form exports print
        and store.
        """
        unused = () if self.encoder == REFERENCE_ENCODER else ("base_channels", "depth")
        return {key: getattr(self, key) for key in self._names() if key not in unused}

    def __getitem__(self, key: str) -> Any:
        if key not in self._names():
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())

    @classmethod
    def _names(cls) -> tuple[str, ...]:
        return tuple(field.name for field in dataclasses.fields(cls))


class UNetOutput(NamedTuple):
    """What :meth:`UNet.forward` returns.

    Attributes:
        mask_logits: Segmentation logits, ``(B, 1, H, W)``; ``sigmoid`` gives the tumour probability.
        class_logits: Classification logits, ``(B, num_classes)``; ``softmax`` gives class probabilities.
    """

    mask_logits: Tensor
    class_logits: Tensor


class UNet(nn.Module):
    """U-Net that segments the tumour and classifies the slice from the same encoder.

    With default arguments this is the reference notebook's ``CustomUNet`` parameter for parameter
    (31,306,949 parameters; 31,658,481 with ``attention=True``), and :meth:`from_reference` loads its
    ``state_dict`` files.

    Layout (``C = base_channels``, ``d = depth``):

    - ``encoder``: a :class:`ReferenceEncoder` (a ``ModuleList``) of ``d + 1`` stages. ``encoder[0]`` is a
      :class:`DoubleConv` (``in_channels -> C``, full resolution); ``encoder[i]`` (``i >= 1``) is a
      :class:`DownBlock` (max-pool + double conv, ``C * 2**(i-1) -> C * 2**i``, resolution ``/ 2**i``).
    - ``bottleneck``: the last encoder stage, ``encoder[-1]`` (the same module). Its output,
      ``(B, C * 2**d, H / 2**d, W / 2**d)``, feeds both the decoder and the classification head: hook it for
      Grad-CAM of the class prediction.
    - ``decoder``: a :class:`UNetDecoder` (a ``ModuleList``) of ``d`` :class:`UpBlock` s, deepest first
      (transposed conv, skip gate, concatenation ``[skip, upsampled]``, double conv).
    - ``segmentation_head``: 1x1 conv ``C -> 1`` (mask logits).
    - ``classification_head``: :class:`ClassificationHead` on the bottleneck (global average pool,
      ``Linear -> ReLU -> Dropout -> Linear``).

    ``config`` (:class:`UNetConfig`) is the architecture: ``UNet(**model.config)`` rebuilds it.

    :meth:`classify` runs the encoder and the classification head only (the decoder does not run), for
    batches that have a class label but no mask.

    With ``encoder="<timm model name>"`` the encoder is a timm feature pyramid (:class:`TimmEncoder`, optionally
    ImageNet-pretrained) and the same decoder is built from its channels: one :class:`UpBlock` per skip, then
    :class:`UpsampleBlock` s (``final_up``) back to full resolution when the encoder's first feature map is already
    downsampled. The classification head sits on the deepest feature map; ``base_channels`` and ``depth`` apply to
    the reference encoder only.

    Args:
        in_channels: Channels of the input image (3 for the reference notebook's RGB-replicated slices).
        num_classes: Number of classes of the classification head.
        base_channels: Channels of the first encoder stage; each further stage doubles them.
        depth: Number of down-sampling stages. Input height and width must be multiples of ``2**depth``.
        attention: Put attention gates on the skip connections (Attention U-Net).
        classifier_hidden: Hidden width of the classification head.
        classifier_dropout: Dropout probability in the classification head.
        encoder: ``"reference"`` (the notebook's from-scratch encoder) or a timm model name that supports
            ``features_only`` (``resnet34``, ``efficientnet_b0``, ``convnext_tiny``, ...).
        encoder_weights: timm encoders only: None (random init), ``"imagenet"`` (timm's pretrained weights,
            downloaded once), or the path of a local weights file.

    Example:
        >>> model = UNet(base_channels=8, depth=2).eval()
        >>> out = model(torch.zeros(1, 3, 32, 32))
        >>> tuple(out.mask_logits.shape), tuple(out.class_logits.shape)
        ((1, 1, 32, 32), (1, 4))
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = NUM_CLASSES,
        base_channels: int = 64,
        depth: int = 4,
        attention: bool = False,
        classifier_hidden: int = 256,
        classifier_dropout: float = 0.6,
        encoder: str = REFERENCE_ENCODER,
        encoder_weights: str | os.PathLike | None = None,
    ) -> None:
        super().__init__()
        for name, value in (
            ("in_channels", in_channels),
            ("num_classes", num_classes),
            ("base_channels", base_channels),
            ("depth", depth),
            ("classifier_hidden", classifier_hidden),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"UNet: {name} must be a positive integer, got {value!r}")
        if not 0.0 <= classifier_dropout < 1.0:
            raise ValueError(f"UNet: classifier_dropout must lie in [0, 1), got {classifier_dropout!r}")

        self.config = UNetConfig(
            in_channels=in_channels,
            num_classes=num_classes,
            base_channels=base_channels,
            depth=depth,
            attention=bool(attention),
            classifier_hidden=classifier_hidden,
            classifier_dropout=float(classifier_dropout),
            encoder=encoder,
        )
        """The architecture: ``UNet(**model.config)`` builds the same network (fresh weights)."""
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.base_channels = base_channels
        self.depth = depth
        self.attention = bool(attention)
        self.encoder_name = encoder

        # Registration order (encoder, classification head, decoder stage by stage, segmentation head) makes
        # reference_state_dict() list keys in the notebook's order.
        self.encoder: ReferenceEncoder | TimmEncoder
        if encoder == REFERENCE_ENCODER:
            if encoder_weights is not None:
                raise ValueError(
                    "UNet: encoder_weights applies to timm encoders; the reference encoder loads the notebook's "
                    "files with UNet.from_reference(path)"
                )
            self.encoder = ReferenceEncoder(in_channels, base_channels, depth)
        else:
            self.encoder = TimmEncoder(encoder, in_channels=in_channels, weights=encoder_weights)
        channels, reductions = self.encoder.channels, self.encoder.reductions
        self.normalization = self.encoder.normalization
        """The pixel normalisation the encoder was trained with (the pipeline's for the reference encoder)."""
        if not self.is_reference:
            if any(b != 2 * a for a, b in itertools.pairwise(reductions)) or reductions[0] & (reductions[0] - 1):
                raise ValueError(
                    f"UNet: encoder {encoder!r} has feature strides {reductions}; the decoder needs strides that "
                    "double from one feature map to the next (a CNN feature pyramid such as resnet or convnext)"
                )
        self.output_stride = reductions[-1]
        self.classification_head = ClassificationHead(
            channels[-1], num_classes, hidden=classifier_hidden, dropout=classifier_dropout
        )
        self.decoder = UNetDecoder(channels, attention=attention)
        # Back to full resolution when the first feature map is downsampled (empty for the reference encoder).
        widths = [channels[0]]
        while len(widths) <= reductions[0].bit_length() - 1:
            widths.append(max(16, widths[-1] // 2))
        self.final_up = nn.ModuleList([UpsampleBlock(a, b) for a, b in itertools.pairwise(widths)])
        self.segmentation_head = nn.Conv2d(widths[-1], 1, kernel_size=1)

    @property
    def is_reference(self) -> bool:
        """Whether the encoder is the reference notebook's (weight-compatible with its files)."""
        return self.encoder_name == REFERENCE_ENCODER

    @property
    def bottleneck(self) -> nn.Module:
        """The module whose output is the deepest feature map, which feeds the classification head.

        ``encoder[-1]`` for the reference encoder, the timm encoder's ``deepest`` identity otherwise: hook it for
        Grad-CAM of the class prediction.
        """
        return self.encoder.deepest

    def check_input_shape(self, x: Tensor) -> None:
        """Raise a ``ValueError`` that says the fix if ``x`` cannot go through the network.

        Args:
            x: Input batch, expected ``(B, in_channels, H, W)`` with ``H`` and ``W`` multiples of
                ``output_stride``.

        Raises:
            ValueError: Wrong number of dimensions or channels, or a side that is not a multiple of
                ``output_stride`` (the message names the nearest valid sizes).
        """
        if x.dim() != 4:
            raise ValueError(
                f"UNet expects a batch of images shaped (B, C, H, W); got a {x.dim()}-D tensor of shape "
                f"{tuple(x.shape)}. For a single image use x.unsqueeze(0)."
            )
        if x.shape[1] != self.in_channels:
            hint = (
                " Gray images: repeat them to 3 channels (x.expand(-1, 3, -1, -1)) or build UNet(in_channels=1)."
                if x.shape[1] == 1
                else ""
            )
            raise ValueError(
                f"UNet was built for {self.in_channels}-channel input but got {x.shape[1]} channels "
                f"(input shape {tuple(x.shape)}, expected (B, {self.in_channels}, H, W)).{hint}"
            )
        stride = self.output_stride
        bad = [(name, int(size)) for name, size in (("height", x.shape[2]), ("width", x.shape[3])) if size % stride]
        if bad:
            details = "; ".join(
                f"{name} {size}: nearest valid sizes are {_nearest_multiples(size, stride)}" for name, size in bad
            )
            needs = (
                f"depth={self.depth} needs height and width divisible by 2**depth = {stride}"
                if self.is_reference
                else f"encoder {self.encoder_name!r} needs height and width divisible by its output stride {stride}"
            )
            raise ValueError(
                f"UNet with {needs}, got input of shape {tuple(x.shape)} ({details}). Resize or pad the image."
            )

    def _check(self, x: Tensor) -> None:
        # Shape checks are Python control flow: skip them while tracing for export so that the exported graph
        # keeps dynamic sizes and no TracerWarning is raised.
        if not (torch.jit.is_tracing() or _is_compiling()):
            self.check_input_shape(x)

    def encode(self, x: Tensor) -> list[Tensor]:
        """Run the encoder.

        Args:
            x: Images, ``(B, in_channels, H, W)``.

        Returns:
            Feature maps, shallowest first; ``features[-1]`` is the bottleneck. Reference encoder: ``depth + 1``
            maps, ``features[i]`` is ``(B, base_channels * 2**i, H / 2**i, W / 2**i)``; timm encoders: one per
            ``encoder.channels`` / ``encoder.reductions``.
        """
        self._check(x)
        return self.encoder(x)

    def decode(self, features: list[Tensor]) -> Tensor:
        """Run the decoder on the encoder's features.

        Args:
            features: The output of :meth:`encode`.

        Returns:
            The last decoder feature at full resolution, ``(B, C, H, W)`` (``C = base_channels`` for the reference
            encoder).
        """
        x = self.decoder(features)
        for stage in self.final_up:
            x = stage(x)
        return x

    def classify(self, x: Tensor) -> Tensor:
        """Class logits from the encoder and classification head only; the decoder does not run.

        Args:
            x: Images, ``(B, in_channels, H, W)``.

        Returns:
            Class logits, ``(B, num_classes)``; in eval mode equal to ``forward(x).class_logits``.
        """
        return self.classification_head(self.encode(x)[-1])

    def forward(self, x: Tensor) -> UNetOutput:
        """Segment and classify.

        Args:
            x: Images, ``(B, in_channels, H, W)``, ``H`` and ``W`` multiples of ``output_stride``.

        Returns:
            :class:`UNetOutput` with ``mask_logits (B, 1, H, W)`` and ``class_logits (B, num_classes)``.
        """
        features = self.encode(x)
        class_logits = self.classification_head(features[-1])
        mask_logits = self.segmentation_head(self.decode(features))
        return UNetOutput(mask_logits=mask_logits, class_logits=class_logits)

    @classmethod
    def from_reference(cls, path_or_state_dict: str | os.PathLike | dict[str, Tensor], **kwargs: Any) -> UNet:
        """Build a UNet from a reference-notebook ``state_dict`` (file or dict), either variant.

        The architecture (attention or not, depth, channels, classes, head width) is read from the weights'
        keys and shapes; ``kwargs`` go to the constructor and override what was read (e.g.
        ``classifier_dropout``, which weights cannot tell). Files are read with
        ``torch.load(..., weights_only=True)``: a file that would run code is refused. Weights saved from a
        ``DataParallel`` or ``torch.compile`` model (``module.`` / ``_orig_mod.`` prefixes) load too.

        Args:
            path_or_state_dict: Path of a ``.pth`` file written by ``torch.save(model.state_dict(), ...)`` in
                the notebook, or such a state dict.
            **kwargs: Constructor arguments that override the ones read from the weights.

        Returns:
            A UNet holding the weights (in training mode, like any new module).

        Raises:
            ValueError: The file cannot be read safely, or the weights do not fit (the message names the first
                missing, unexpected and mis-shaped keys).
        """
        state_dict = reference.load_state_dict_file(path_or_state_dict)
        config = reference.infer_config(state_dict)
        config.update(kwargs)
        model = cls(**config)
        # Compare in the reference layout, so the error names keys as they appear in the user's file.
        reference.check_fits(
            model.reference_state_dict(),
            state_dict,
            source=reference.describe(path_or_state_dict),
            model_desc=f"UNet({', '.join(f'{k}={v!r}' for k, v in config.items())})",
        )
        model.load_state_dict(reference.from_reference_keys(state_dict))
        return model

    def reference_state_dict(self, keep_vars: bool = False) -> dict[str, Tensor]:
        """The weights in the reference notebook's key layout (``inc``, ``down1``, ..., ``outc``, ``classifier``).

        ``torch.save(model.reference_state_dict(), "x.pth")`` writes a file that the notebook's
        ``CustomUNet(attention=...)`` loads with ``load_state_dict`` (for the default depth 4 and 64 channels).
        Like ``state_dict()``, the tensors share storage with the parameters.

        Args:
            keep_vars: As in ``state_dict``: return the ``Parameter`` objects themselves (with ``.grad``).

        Returns:
            An ordered ``dict`` key -> tensor, in the notebook's key order.

        Raises:
            ValueError: the encoder is a timm encoder (the notebook has no such network).
        """
        if not self.is_reference:
            raise ValueError(f"UNet(encoder={self.encoder_name!r}) has no reference-notebook layout")
        return reference.to_reference_keys(self.state_dict(keep_vars=keep_vars))


def config_of(network: nn.Module) -> UNetConfig | None:
    """The architecture of a :class:`UNet`, or of the ``model`` a task wraps; None for any other network."""
    for candidate in (network, getattr(network, "model", None)):
        if isinstance(candidate, UNet):
            return candidate.config
    return None


def _is_compiling() -> bool:
    return bool(torch.compiler.is_compiling())


def _nearest_multiples(size: int, stride: int) -> str:
    below = (size // stride) * stride
    above = below + stride
    return f"{below} or {above}" if below > 0 else f"{above}"
