"""Pretrained encoders from timm under the joint U-Net: feature pyramid, input adapter, weight loading.

timm is imported only when a timm encoder is built, so the reference network keeps working without it.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from brain_mtl.models.blocks import DoubleConv, DownBlock

__all__ = [
    "PIPELINE_MEAN",
    "PIPELINE_STD",
    "REFERENCE_ENCODER",
    "InputAdapter",
    "ReferenceEncoder",
    "TimmEncoder",
    "load_weights_file",
]

REFERENCE_ENCODER = "reference"
"""Name of the reference notebook's from-scratch encoder (``UNet(encoder="reference")``, the default)."""

PIPELINE_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
"""Per-channel mean of the data pipeline's normalisation (RGB, 0-1 pixels; ImageNet's, as in the reference notebook):
what every model receives. The one home of the constant: the data transforms, the predictor and exports read it."""
PIPELINE_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
"""Per-channel standard deviation of the data pipeline's normalisation."""

# Prefixes that wrap an encoder's keys in files users have: DataParallel, torch.compile, a timm/Lightning
# checkpoint of a whole model, or a brain_mtl UNet / BrainTumorModule state dict.
_KEY_PREFIXES = ("module.", "_orig_mod.", "model.encoder.model.", "encoder.model.", "model.")


def _timm():
    try:
        import timm
    except ImportError as error:  # pragma: no cover - timm is a dependency; this guards broken installs
        raise ImportError(
            f"timm encoders need the timm package ({error}); install it with `pip install timm`"
        ) from error
    return timm


class InputAdapter(nn.Module):
    """Per-channel affine map from the pipeline's normalisation to the one an encoder was pretrained with.

    The data pipeline, predict-images and ONNX exports all feed ``(pixels / 255 - PIPELINE_MEAN) / PIPELINE_STD``;
    this layer turns that into ``(pixels / 255 * range_scale - mean) / std`` for the encoder. It is part of the
    network (its constants are buffers in the state dict), so a checkpoint predicts correctly with no flags.
    For an ImageNet-normalised encoder it is the identity, and it is skipped.

    Args:
        mean: the encoder's per-channel mean (on its input range).
        std: the encoder's per-channel standard deviation.
        input_range: the pixel range the encoder expects, e.g. ``(0, 1)`` or ``(0, 255)``.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], input_range: Sequence[float] = (0.0, 1.0)) -> None:
        super().__init__()
        scale = float(input_range[1]) - float(input_range[0])
        pipe_mean, pipe_std = torch.tensor(PIPELINE_MEAN), torch.tensor(PIPELINE_STD)
        mean_t, std_t = torch.tensor(list(mean), dtype=torch.float32), torch.tensor(list(std), dtype=torch.float32)
        # x_enc = ((x * pipe_std + pipe_mean) * scale + low - mean) / std = x * weight + bias
        weight = pipe_std * scale / std_t
        bias = (pipe_mean * scale + float(input_range[0]) - mean_t) / std_t
        self.register_buffer("weight", weight.view(1, -1, 1, 1))
        self.register_buffer("bias", bias.view(1, -1, 1, 1))
        self.identity = bool(torch.allclose(weight, torch.ones(3)) and torch.allclose(bias, torch.zeros(3)))

    def forward(self, x: Tensor) -> Tensor:
        """``(B, 3, H, W)`` pipeline-normalised images -> the encoder's normalisation."""
        if self.identity:
            return x
        return x * self.weight.to(x.dtype) + self.bias.to(x.dtype)


class ReferenceEncoder(nn.ModuleList):
    """The reference notebook's from-scratch encoder: ``depth + 1`` stages, shallowest first.

    ``self[0]`` is a :class:`DoubleConv` (``in_channels -> C``, full resolution); ``self[i]`` (``i >= 1``) a
    :class:`DownBlock` (max-pool + double conv, ``C * 2**(i-1) -> C * 2**i``, resolution ``/ 2**i``). A ``ModuleList``,
    so its weights keep the names ``encoder.<i>....`` of every checkpoint written before it was a class.

    Args:
        in_channels: channels of the input image.
        base_channels: channels of the first stage (``C``); each further stage doubles them.
        depth: number of down-sampling stages.

    Attributes:
        channels: channels of each feature map, shallowest first.
        reductions: stride of each feature map relative to the input, ``[1, 2, ..., 2**depth]``.
        normalization: the pipeline's normalisation, which it is trained on.
    """

    def __init__(self, in_channels: int = 3, base_channels: int = 64, depth: int = 4) -> None:
        channels = [base_channels * 2**i for i in range(depth + 1)]
        super().__init__(
            [DoubleConv(in_channels, channels[0])]
            + [DownBlock(c_in, c_out) for c_in, c_out in itertools.pairwise(channels)]
        )
        self.channels: list[int] = channels
        self.reductions: list[int] = [2**i for i in range(depth + 1)]
        self.normalization = {"mean": list(PIPELINE_MEAN), "std": list(PIPELINE_STD), "input_range": [0.0, 1.0]}

    @property
    def deepest(self) -> nn.Module:
        """The last stage, whose output is the deepest feature map: hook it for Grad-CAM of the class prediction."""
        return self[-1]

    def forward(self, x: Tensor) -> list[Tensor]:  # type: ignore[override]
        """Feature maps of ``(B, in_channels, H, W)`` images, shallowest first."""
        features = []
        for stage in self:
            x = stage(x)
            features.append(x)
        return features


class TimmEncoder(nn.Module):
    """A timm model's feature pyramid (``features_only``), shallowest first.

    Args:
        name: a timm model name that supports ``features_only`` (``resnet34``, ``efficientnet_b0``,
            ``convnext_tiny``, ``regnety_008``, ``mobilenetv3_large_100``, ...).
        in_channels: input channels (3; timm adapts the stem's weights for other counts).
        weights: None (random init), ``"imagenet"`` (timm's pretrained weights, downloaded once into the
            Hugging Face cache), or the path of a weights file (see :func:`load_weights_file`).

    Attributes:
        channels: channels of each feature map, shallowest first.
        reductions: stride of each feature map relative to the input, e.g. ``[2, 4, 8, 16, 32]``.
        normalization: ``{"mean", "std", "input_range"}`` the encoder was pretrained with.
        deepest: an identity on the deepest feature map: hook it for Grad-CAM of the class prediction.
    """

    def __init__(self, name: str, in_channels: int = 3, weights: str | os.PathLike | None = None) -> None:
        super().__init__()
        timm = _timm()
        if not timm.is_model(name):
            close = timm.list_models(f"*{name.split('_')[0]}*")[:8]
            raise ValueError(
                f"unknown encoder {name!r}: not 'reference' nor a timm model name"
                + (f" (close names: {', '.join(close)})" if close else "")
            )
        try:
            self.model = timm.create_model(name, pretrained=False, features_only=True, in_chans=in_channels)
        except (RuntimeError, TypeError, AttributeError) as error:
            raise ValueError(f"encoder {name!r} does not support timm's features_only: {error}") from error
        self.name = name
        self.in_channels = in_channels
        self.channels: list[int] = list(self.model.feature_info.channels())
        self.reductions: list[int] = list(self.model.feature_info.reduction())
        cfg = dict(getattr(self.model, "pretrained_cfg", None) or {})
        self.normalization = {
            "mean": [float(v) for v in cfg.get("mean", PIPELINE_MEAN)],
            "std": [float(v) for v in cfg.get("std", PIPELINE_STD)],
            "input_range": [float(v) for v in cfg.get("input_range", (0.0, 1.0))],
        }
        self.adapter = InputAdapter(**self.normalization)
        self.deepest = nn.Identity()
        if weights is not None:
            self.load_weights(weights)

    def forward(self, x: Tensor) -> list[Tensor]:
        """Feature maps of ``(B, in_channels, H, W)`` images, shallowest first."""
        features = list(self.model(self.adapter(x)))
        features[-1] = self.deepest(features[-1])
        return features

    def load_weights(self, weights: str | os.PathLike) -> None:
        """Load ``"imagenet"`` (timm's pretrained weights) or a local weights file into the encoder.

        Raises:
            RuntimeError: ``imagenet`` weights could not be fetched (no network): the message names the offline
                alternative.
            ValueError: the file does not hold this encoder's weights.
        """
        if str(weights) == "imagenet":
            self.model.load_state_dict(_pretrained_state_dict(self.name, self.in_channels), strict=True)
            return
        load_weights_file(self.model, weights, self.name)


def _pretrained_state_dict(name: str, in_chans: int) -> dict[str, Tensor]:
    timm = _timm()
    try:
        pretrained = timm.create_model(name, pretrained=True, features_only=True, in_chans=in_chans)
    except Exception as error:  # huggingface_hub and urllib raise many types when offline
        raise RuntimeError(
            f"could not fetch the ImageNet weights of {name!r} ({type(error).__name__}: "
            f"{(str(error).strip().splitlines() or [''])[0][:200]}). Without network, train with a local file: on "
            f"a machine with network run  python -c \"import timm, torch; torch.save(timm.create_model('{name}', "
            f"pretrained=True).state_dict(), '{name}.pth')\"  and pass  --model.encoder_weights {name}.pth  (or "
            "copy that machine's ~/.cache/huggingface here); or use --model.encoder_weights null."
        ) from error
    return pretrained.state_dict()


def _read(path: Path) -> Mapping[str, Any]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)


def load_weights_file(model: nn.Module, path: str | os.PathLike, name: str = "encoder") -> None:
    """Load an encoder's weights from a local file.

    ``.pth``/``.pt``/``.bin`` files are read with ``torch.load(weights_only=True)``, ``.safetensors`` with
    safetensors. Accepted: the timm model's own state dict (classification weights: the head's keys are ignored), a
    checkpoint dict holding one under ``state_dict``/``model``/``state_dict_ema``, or a brain_mtl UNet /
    BrainTumorModule state dict (its ``encoder.model.`` keys).

    Raises:
        ValueError: the file cannot be read, or it lacks weights of this encoder (the message names the first
            missing keys).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"encoder weights file {path} does not exist (model.encoder_weights)")
    try:
        content = _read(path)
    except Exception as error:
        raise ValueError(f"cannot read {path} as a weights file ({type(error).__name__}: {error})") from error
    for key in ("state_dict", "model", "state_dict_ema"):
        if isinstance(content, Mapping) and isinstance(content.get(key), Mapping):
            content = content[key]
            break
    expected = model.state_dict()
    state: dict[str, Tensor] = {}
    for key, value in content.items():
        if not isinstance(value, Tensor):
            continue
        for prefix in ("", *_KEY_PREFIXES):
            if key.startswith(prefix) and key[len(prefix) :] in expected:
                state[key[len(prefix) :]] = value
                break
    missing = [k for k in expected if k not in state]
    if missing:
        raise ValueError(
            f"{path} does not hold the weights of encoder {name!r}: {len(missing)} of its {len(expected)} tensors "
            f"are missing (e.g. {', '.join(missing[:4])}). Save them with "
            f"torch.save(timm.create_model('{name}').state_dict(), path)."
        )
    wrong = [
        f"{k}: file {tuple(v.shape)}, model {tuple(expected[k].shape)}"
        for k, v in state.items()
        if v.shape != expected[k].shape
    ]
    if wrong:
        raise ValueError(f"{path}: shapes do not fit encoder {name!r}: {'; '.join(wrong[:4])}")
    model.load_state_dict(state, strict=True)
