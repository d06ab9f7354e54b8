"""Small stand-in networks whose outputs are known, to test geometry and averaging without training."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import torch
from torch import Tensor, nn

from brain_mtl.models import UNetOutput


class BrightnessSegmenter(nn.Module):
    """Mask logits from pixel brightness (a perfect segmenter of bright objects on black); fixed class logits.

    On ImageNet-normalised input black is about -2 and white about +2.2, so the logit is positive on bright pixels.
    """

    in_channels = 3
    output_stride = 1

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(10.0))

    def forward(self, x: Tensor) -> UNetOutput:
        mask_logits = self.scale * x.mean(dim=1, keepdim=True)
        class_logits = torch.tensor([0.0, 1.0, 2.0, 0.5], device=x.device).expand(x.shape[0], -1)
        return UNetOutput(mask_logits, class_logits)


class LopsidedNet(nn.Module):
    """Outputs that change when the image is mirrored: a column ramp in the mask, left/right means in the classes."""

    in_channels = 3
    output_stride = 1

    def forward(self, x: Tensor) -> UNetOutput:
        width = x.shape[-1]
        ramp = torch.linspace(-2.0, 2.0, width, device=x.device)
        mask_logits = x.mean(dim=1, keepdim=True) + ramp
        left, right = x[..., : width // 2].mean(dim=(1, 2, 3)), x[..., width // 2 :].mean(dim=(1, 2, 3))
        class_logits = torch.stack([left, right, left - right, torch.zeros_like(left)], dim=1) * 3
        return UNetOutput(mask_logits, class_logits)


class NaNOnBrightImages(nn.Module):
    """Finite outputs for dark images; NaN class logits for images brighter than mid-gray (a network that breaks).

    Stands for a model that overflows on some inputs only, without needing weights that load_checkpoint refuses.
    """

    in_channels = 3
    output_stride = 1

    def forward(self, x: Tensor) -> UNetOutput:
        mask_logits = x.mean(dim=1, keepdim=True)
        bright = x.mean(dim=(1, 2, 3)) > 0
        class_logits = torch.tensor([0.0, 1.0, 2.0, 0.5], device=x.device).repeat(x.shape[0], 1)
        class_logits[bright] = float("nan")
        return UNetOutput(mask_logits, class_logits)


def overflow_checkpoint(path, source) -> None:
    """Copy of the Lightning checkpoint ``source`` whose class head overflows to infinity on every input.

    All weights stay finite (so loading accepts them): the hidden layer outputs 1 everywhere and the last layer
    multiplies by 3e38, so every class logit is +inf and softmax gives NaN. A finite network can do this; the
    outputs must be refused when written, not at load time.
    """
    checkpoint = torch.load(source, weights_only=True)
    state = checkpoint["state_dict"]
    head = "model.classification_head.mlp."
    state[head + "0.weight"].zero_()
    state[head + "0.bias"].fill_(1.0)
    state[head + "3.weight"].fill_(3e38)
    state[head + "3.bias"].zero_()
    torch.save(checkpoint, path)


def prediction_rows(path: Path) -> dict[str, dict[str, str]]:
    """The rows of a ``predictions.csv``, by image file name."""
    with path.open(newline="") as f:
        return {Path(r["file"]).name: r for r in csv.DictReader(f)}


def lightning_predict_args(config: Path, ckpt: Path, data_root: Path, out: Path, run_dir: Path) -> list[str]:
    """``python -m brain_mtl predict`` with the PredictionWriter into ``out``, at 64 px, quiet, fp32."""
    writer = {"class_path": "brain_mtl.callbacks.PredictionWriter", "init_args": {"output_dir": str(out)}}
    callbacks = json.dumps([writer])
    return [
        "predict",
        "--config",
        str(config),
        "--ckpt_path",
        str(ckpt),
        "--data.root",
        str(data_root),
        "--data.image_size",
        "64",
        "--data.num_workers",
        "0",
        "--trainer.logger",
        "false",
        "--trainer.precision",
        "32-true",
        "--trainer.default_root_dir",
        str(run_dir),
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.callbacks",
        callbacks,
        "--return_predictions",
        "false",
    ]
