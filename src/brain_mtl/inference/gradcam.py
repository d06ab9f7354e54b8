"""Grad-CAM for the classification head: where in the image the evidence for a class lies.

Grad-CAM (Selvaraju et al., 2017) weights each channel of a feature map by the spatial mean of the gradient of
one class logit with respect to that channel, sums the weighted channels and keeps the positive part. For the
U-Net the natural layer is the bottleneck (``UNet.bottleneck``: the deepest encoder stage for every encoder, an
identity on the deepest feature map of a timm encoder), which is exactly what the classification head pools; the
map is coarse (``H / model.output_stride``: ``2**depth`` for the reference encoder, 32 for timm encoders) and is
upsampled to the input size.

Plain PyTorch: a forward hook on the target layer keeps its output and ``torch.autograd.grad`` takes the class
score's gradient with respect to it, so the network is not modified, parameter gradients are not touched, and any
module whose ``classify(x)`` (or ``forward(x).class_logits``) runs through the layer works.

Example:
    >>> from brain_mtl.models import UNet
    >>> model = UNet(base_channels=4, depth=2).eval()
    >>> cam = GradCAM(model)
    >>> result = cam(torch.randn(2, 3, 32, 32))
    >>> tuple(result.maps.shape), tuple(result.class_indices.shape)
    ((2, 32, 32), (2,))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["GradCAM", "GradCAMResult"]


class GradCAMResult(NamedTuple):
    """What :meth:`GradCAM.__call__` returns.

    Attributes:
        maps: ``(B, H, W)`` float maps at the input size, each scaled to ``[0, 1]`` by its own maximum (an image
            with no positive evidence gets an all-zero map).
        class_indices: ``(B,)`` the class each map explains.
        class_logits: ``(B, C)`` the class logits of the forward pass (detached).
    """

    maps: Tensor
    class_indices: Tensor
    class_logits: Tensor


class GradCAM:
    """Grad-CAM of a network's class logits over one of its feature layers.

    Args:
        model: a :class:`~brain_mtl.models.UNet` or any module with ``classify(x) -> (B, C)`` logits (used when
            present, so the decoder does not run) or whose ``forward(x)`` returns an object with
            ``class_logits``.
        target_layer: the layer whose output is explained: a module of ``model``, its dotted name in
            ``model.named_modules()`` (e.g. ``"encoder.3"``; with a timm encoder ``"encoder.model.layer3"``,
            ``"encoder.model.blocks.3"``, ...), or None for ``model.bottleneck`` (the feature map the
            classification head pools).

    Raises:
        ValueError: ``target_layer`` names no module of ``model``, or it is None and ``model`` has no
            ``bottleneck``.
    """

    def __init__(self, model: nn.Module, target_layer: nn.Module | str | None = None) -> None:
        self.model = model
        self.target_layer = self._resolve_layer(model, target_layer)

    @staticmethod
    def _resolve_layer(model: nn.Module, target_layer: nn.Module | str | None) -> nn.Module:
        if target_layer is None:
            layer = getattr(model, "bottleneck", None)
            if not isinstance(layer, nn.Module):
                raise ValueError(
                    f"{type(model).__name__} has no `bottleneck` module: pass target_layer= (a module or its name "
                    "in model.named_modules())."
                )
            return layer
        if isinstance(target_layer, str):
            modules = dict(model.named_modules())
            if target_layer not in modules:
                names = [name for name in modules if name][:12]
                raise ValueError(f"target_layer {target_layer!r} is not a module of the model; some names: {names}")
            return modules[target_layer]
        if not any(m is target_layer for m in model.modules()):
            raise ValueError("target_layer is not a submodule of the model")
        return target_layer

    def _class_logits(self, images: Tensor) -> Tensor:
        classify = getattr(self.model, "classify", None)
        if callable(classify):
            return classify(images)
        out = self.model(images)
        return out.class_logits if hasattr(out, "class_logits") else out

    def __call__(self, images: Tensor, target_class: int | Sequence[int] | Tensor | None = None) -> GradCAMResult:
        """Compute the maps for a batch.

        The model runs in eval mode (dropout off, BatchNorm on its running statistics) and is put back in its
        previous mode afterwards; parameter gradients are left untouched.

        Args:
            images: ``(B, C, H, W)`` preprocessed images, as the network takes them.
            target_class: the class to explain: None for each image's predicted class, one index for all images,
                or ``B`` indices.

        Returns:
            :class:`GradCAMResult` with ``maps (B, H, W)`` in ``[0, 1]``.

        Raises:
            RuntimeError: the target layer did not run in the classification path, or its output does not
                influence the class logits.
        """
        store: dict[str, Tensor] = {}

        def keep_output(_module: nn.Module, _inputs: object, output: Tensor) -> None:
            if not isinstance(output, Tensor):
                raise RuntimeError("Grad-CAM needs a target layer that returns one tensor (B, C, h, w)")
            store["activations"] = output

        handle = self.target_layer.register_forward_hook(keep_output)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.enable_grad():
                # Gradients must reach the layer even when the caller froze the parameters.
                x = images.detach().requires_grad_(True)
                logits = self._class_logits(x)
                if "activations" not in store:
                    raise RuntimeError(
                        "Grad-CAM: the target layer did not run when computing the class logits; choose a layer "
                        "of the encoder (the classification head sees only the encoder's output)."
                    )
                targets = self._targets(target_class, logits)
                score = logits.gather(1, targets[:, None]).sum()
                # Only the gradient of the layer output is needed: autograd.grad leaves parameters' .grad alone.
                (gradients,) = torch.autograd.grad(score, store["activations"], allow_unused=True)
        finally:
            handle.remove()
            self.model.train(was_training)
        if gradients is None:
            raise RuntimeError("Grad-CAM: the class logits do not depend on the target layer's output")
        activations = store["activations"].detach().float()
        gradients = gradients.detach().float()
        weights = gradients.mean(dim=(2, 3), keepdim=True)
        cams = F.relu((weights * activations).sum(dim=1, keepdim=True))
        cams = F.interpolate(cams, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        peak = cams.flatten(1).amax(dim=1).clamp_min(torch.finfo(cams.dtype).tiny)
        cams = (cams / peak[:, None, None]).clamp_(0.0, 1.0)
        return GradCAMResult(maps=cams, class_indices=targets.detach(), class_logits=logits.detach())

    @staticmethod
    def _targets(target_class: int | Sequence[int] | Tensor | None, logits: Tensor) -> Tensor:
        batch, num_classes = logits.shape
        if target_class is None:
            return logits.argmax(dim=1)
        targets = torch.as_tensor(target_class, dtype=torch.long, device=logits.device).reshape(-1)
        if targets.numel() == 1:
            targets = targets.expand(batch)
        if targets.numel() != batch:
            raise ValueError(f"target_class: got {targets.numel()} classes for a batch of {batch} images")
        if bool(((targets < 0) | (targets >= num_classes)).any()):
            raise ValueError(f"target_class must lie in [0, {num_classes}), got {targets.tolist()}")
        return targets
