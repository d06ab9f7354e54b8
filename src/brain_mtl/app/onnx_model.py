"""An ONNX file written by ``python -m brain_mtl export`` as a network the :class:`~brain_mtl.inference.Predictor` runs.

The exported graph takes ``image`` ``(B, 3, H, W)`` (ImageNet-normalised) and returns ``mask_logits`` and
``class_logits``; its metadata records the preprocessing (image size, letterbox, mean and std), the class names and
the mask threshold. :class:`OnnxNetwork` runs the graph with ONNX Runtime on the CPU behind an ``nn.Module``
``forward``, so the predictor's preprocessing, test-time augmentation and post-processing apply unchanged. It has
no gradients: Grad-CAM needs the PyTorch checkpoint.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from brain_mtl.inference import Preprocessing

__all__ = ["OnnxNetwork", "load_onnx"]

OUTPUT_NAMES = ("mask_logits", "class_logits")
"""The outputs ``brain_mtl export`` names, in this order."""

_REQUIRED = ("image_size", "class_names", "mask_threshold")


def _require_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as error:
        raise ImportError(
            'Serving an ONNX file needs onnxruntime, which is not installed: pip install -e ".[app]" '
            "(or pip install onnxruntime), or start the app with the .ckpt checkpoint instead."
        ) from error
    return onnxruntime


class OnnxNetwork(nn.Module):
    """An exported brain_mtl network run by ONNX Runtime (CPU), with the PyTorch network's ``forward``.

    Args:
        path: the ``.onnx`` file.

    Attributes:
        metadata: the file's metadata (``metadata_props``), JSON values decoded.
        output_stride: input sides must be multiples of it (from the metadata; 1 when absent).

    Raises:
        ValueError: the file is not an ONNX model, or its outputs are not ``mask_logits`` and ``class_logits``.
    """

    in_channels = 3

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__()
        ort = _require_onnxruntime()
        self.path = Path(path)
        options = ort.SessionOptions()
        options.log_severity_level = 3  # warnings about unused initialisers would land in the server's log only
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own exception types for unreadable files
            first = (str(error).strip().splitlines() or [""])[0][:300]
            raise ValueError(
                f"{self.path}: cannot load it as an ONNX model ({type(error).__name__}: {first})"
            ) from error
        outputs = tuple(output.name for output in self.session.get_outputs())
        if outputs != OUTPUT_NAMES:
            raise ValueError(
                f"{self.path}: the graph's outputs are {outputs}, not {OUTPUT_NAMES}: it was not written by "
                "`python -m brain_mtl export`."
            )
        self.input_name = self.session.get_inputs()[0].name
        self.metadata = _decode(self.session.get_modelmeta().custom_metadata_map)
        self.output_stride = int(self.metadata.get("output_stride") or 1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, 3, H, W)`` -> ``(mask_logits (B, 1, H, W), class_logits (B, C))``, on ``x``'s device."""
        feed = {self.input_name: np.ascontiguousarray(x.detach().float().cpu().numpy())}
        mask_logits, class_logits = self.session.run(list(OUTPUT_NAMES), feed)
        return torch.from_numpy(mask_logits).to(x.device), torch.from_numpy(class_logits).to(x.device)


def _decode(entries: dict[str, str]) -> dict[str, Any]:
    decoded: dict[str, Any] = {}
    for key, value in entries.items():
        try:
            decoded[key] = json.loads(value)
        except ValueError:
            decoded[key] = value  # plain strings (producer, encoder, input_layout)
    return decoded


def load_onnx(path: str | os.PathLike) -> tuple[OnnxNetwork, Preprocessing, dict[str, Any]]:
    """Open an exported ONNX file: the network, its preprocessing, and ``encoder``, ``class_names``, ``mask_threshold``.

    Raises:
        ValueError: the file lacks the metadata ``brain_mtl export`` writes, or its normalisation is not the one
            brain_mtl's preprocessing applies.
        ImportError: onnxruntime is not installed.
    """
    network = OnnxNetwork(path)
    meta = network.metadata
    missing = [key for key in _REQUIRED if key not in meta]
    if missing:
        raise ValueError(
            f"{path}: the ONNX file lacks the metadata {missing} that `python -m brain_mtl export` writes, so its "
            "preprocessing is unknown: export the checkpoint again with `python -m brain_mtl export`."
        )
    preprocessing = Preprocessing(image_size=int(meta["image_size"]), keep_aspect=bool(meta.get("keep_aspect", False)))
    for key, expected in (("mean", preprocessing.mean), ("std", preprocessing.std)):
        if key in meta and not np.allclose(np.asarray(meta[key], dtype=float), np.asarray(expected), atol=1e-6):
            raise ValueError(
                f"{path}: the model expects input {key} {meta[key]}, not the {list(expected)} brain_mtl's "
                "preprocessing applies; the app cannot feed it correctly."
            )
    info = {
        "encoder": str(meta.get("encoder") or "not recorded"),
        "class_names": tuple(str(name) for name in meta["class_names"]),
        "mask_threshold": float(meta["mask_threshold"]),
    }
    return network, preprocessing, info
