"""Restore a network for prediction from a Lightning checkpoint or a state-dict file."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from brain_mtl.classes import CLASS_NAMES
from brain_mtl.errors import CheckpointError
from brain_mtl.inference.preprocessing import DEFAULT_IMAGE_SIZE, Preprocessing

__all__ = [
    "STATE_DICT_CONFIG_KEY",
    "LoadedCheckpoint",
    "class_names_for",
    "load_checkpoint",
    "read_checkpoint",
    "state_dict_config",
]

STATE_DICT_CONFIG_KEY = "brain_mtl_unet"
"""Where ``export --format state_dict`` records the architecture: ``state_dict._metadata[""][KEY]``, a dict of
``UNet`` constructor arguments (PyTorch keeps per-module versions in ``_metadata``; ``torch.save`` and
``torch.load(weights_only=True)`` keep it)."""


def class_names_for(num_classes: int) -> tuple[str, ...]:
    """The library's class names for a 4-class head, else ``class_0``, ``class_1``, ..."""
    if num_classes == len(CLASS_NAMES):
        return tuple(CLASS_NAMES)
    return tuple(f"class_{i}" for i in range(num_classes))


@dataclass
class LoadedCheckpoint:
    """A network restored from a file, with what prediction needs to know about it.

    Attributes:
        model: the network (a :class:`~brain_mtl.models.UNet` or the checkpoint module's ``model``), CPU, eval.
        preprocessing: image size and letterboxing used in training.
        mask_threshold: probability above which a pixel is tumour.
        class_names: the class names, in logit order.
        module: the LightningModule for Lightning checkpoints, else None.
        source: the file read.
    """

    model: nn.Module
    preprocessing: Preprocessing
    mask_threshold: float = 0.5
    class_names: tuple[str, ...] = tuple(CLASS_NAMES)
    module: Any = None
    source: str = ""


def _torch_load(path: Path, weights_only: bool) -> Any:
    try:
        # mmap: tensors are not read here; a Lightning checkpoint's weights are read once, by load_from_checkpoint.
        return torch.load(path, map_location="cpu", weights_only=weights_only, mmap=True)
    except RuntimeError as error:
        if "mmap" not in str(error):
            raise
        return torch.load(path, map_location="cpu", weights_only=weights_only)  # legacy (non-zip) format


def is_remote(path: str | os.PathLike) -> bool:
    """Whether a checkpoint path is a URL (``https://...``, ``s3://...``) rather than a local file."""
    return "://" in str(path) and not str(path).startswith("file://")


def _usable_size(path: Path) -> int:
    """A file's size, 0 for what cannot be stat-ed (a dangling link, a link loop, no permission)."""
    try:
        return path.stat().st_size if path.is_file() else 0
    except OSError:
        return 0


def _other_checkpoints(path: Path) -> str:
    """A hint naming the other checkpoints beside ``path`` (never raises: it only decorates another error)."""
    try:
        siblings = list(path.parent.glob("*.ckpt"))
    except OSError:
        return ""
    others = sorted(p.name for p in siblings if p != path and _usable_size(p) > 0)
    if not others:
        return "There is no other checkpoint in its folder."
    return f"Other checkpoints in {path.parent}: {', '.join(others[:6])}{' ...' if len(others) > 6 else ''}."


def _state_dict_of(content: dict[str, Any]) -> dict[str, Any]:
    state = content.get("state_dict")
    if isinstance(state, dict):
        return state
    return {k: v for k, v in content.items() if isinstance(v, Tensor)}


def state_dict_config(state_dict: Any) -> dict[str, Any] | None:
    """The ``UNet`` arguments an ``export --format state_dict`` file records (see :data:`STATE_DICT_CONFIG_KEY`).

    Returns:
        The arguments, or None when the state dict does not carry them (a plain ``dict(state_dict)`` loses them).
    """
    metadata = getattr(state_dict, "_metadata", None)
    root = metadata.get("") if isinstance(metadata, dict) else None
    config = root.get(STATE_DICT_CONFIG_KEY) if isinstance(root, dict) else None
    return dict(config) if isinstance(config, dict) else None


def _unet_from_state_dict(path: Path, state: dict[str, Tensor]) -> nn.Module:
    """A UNet holding a flat state dict: built from the recorded architecture, else read from reference keys."""
    from brain_mtl.models import UNet
    from brain_mtl.models.reference import to_reference_keys

    config = state_dict_config(state)
    if config is not None:
        model = UNet(**config)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as error:
            detail = " ".join(str(error).split())[:300]
            raise ValueError(f"{path}: the weights do not fit the UNet({config}) the file records: {detail}") from error
        return model.eval()
    if any(key.startswith("encoder.model.") for key in state):
        raise ValueError(
            f"{path}: the state dict of a UNet with a timm encoder, without a record of which encoder (files written "
            "by `brain_mtl export --format state_dict` carry it): load it with UNet(encoder=NAME, num_classes=..., "
            "classifier_hidden=...).load_state_dict(...), or export the Lightning checkpoint again"
        )
    state = dict(state)
    if any(k.startswith("encoder.") for k in state):
        state = to_reference_keys(state)
    return UNet.from_reference(state).eval()


def first_non_finite(state_dict: dict[str, Any]) -> str | None:
    """Key of the first floating-point tensor holding NaN or infinity, else None."""
    for key, value in state_dict.items():
        if isinstance(value, Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            return key
    return None


def read_checkpoint(path: str | os.PathLike, *, weights_only: bool = True) -> dict[str, Any]:
    """Read a checkpoint file safely and check that it can be used; the one reader of the command line.

    Args:
        path: a local file, or a URL (``https://``, ``s3://``: read through Lightning, also with
            ``weights_only``).
        weights_only: refuse pickled objects other than tensors and plain types (``torch.load(weights_only=True)``),
            so that a crafted file cannot run code. Set False only for a file you trust.

    Returns:
        The file's content (a Lightning checkpoint or a state dict).

    Raises:
        CheckpointError: one line naming the file, the cause (missing, empty, incomplete or corrupt, refused as
            unsafe, non-finite weights) and what to do.
    """
    source = str(path)
    local = None if is_remote(path) else Path(source.removeprefix("file://"))
    if local is not None:
        if not local.is_file():
            if local.is_symlink():
                raise CheckpointError(
                    f"{local}: a link that leads to no file ({os.readlink(local)}: missing, or a loop of links). "
                    "Point it at the checkpoint, or give the checkpoint's own path."
                )
            raise CheckpointError(f"{local}: no such checkpoint file{' (it is a folder)' if local.is_dir() else ''}.")
        if local.stat().st_size == 0:
            raise CheckpointError(
                f"{local} is empty (0 bytes): the process writing it was probably killed. {_other_checkpoints(local)}"
            )
    try:
        if local is not None:
            content = _torch_load(local, weights_only)
        else:
            from lightning.fabric.utilities.cloud_io import _load

            content = _load(source, map_location="cpu", weights_only=weights_only)
    except Exception as error:  # torch raises several types for refusals and for damaged files
        first_line = (str(error).strip().splitlines() or [""])[0]
        if "weights only load failed" in str(error).lower():
            raise CheckpointError(
                f"{source}: refused: it holds pickled objects besides weights, and unpickling them could run code "
                f"({first_line}). Use checkpoints written by brain_mtl or Lightning; load a file you trust and "
                "need anyway with weights_only=False (--weights_only false)."
            ) from error
        hint = _other_checkpoints(local) if local is not None else ""
        raise CheckpointError(
            f"{source}: cannot read it as a checkpoint: it is incomplete or corrupt, or not a PyTorch file "
            f"({type(error).__name__}: {first_line}). {hint}".rstrip()
        ) from error
    if not isinstance(content, dict):
        raise CheckpointError(f"{source}: expected a checkpoint or state dict, found a {type(content).__name__}.")
    bad = first_non_finite(_state_dict_of(content))
    if bad is not None:
        hint = _other_checkpoints(local) if local is not None else ""
        raise CheckpointError(
            f"{source} holds non-finite weights (NaN or infinity in {bad}): it was written by a run that diverged "
            f"and cannot predict. {hint}".rstrip()
        )
    return content


def load_checkpoint(
    path: str | os.PathLike,
    *,
    image_size: int | None = None,
    keep_aspect: bool | None = None,
    mask_threshold: float | None = None,
    model_class: type | None = None,
    weights_only: bool = True,
) -> LoadedCheckpoint:
    """Restore a network from a Lightning checkpoint, a ``state_dict`` export, or a reference-notebook file.

    Preprocessing comes from the checkpoint (``datamodule_hyper_parameters``: ``image_size``, ``keep_aspect``),
    the threshold from the module's ``mask_threshold``; arguments given here override them. State-dict files
    carry neither: they use the arguments, else 256 px without letterboxing and 0.5. A state dict's architecture
    comes from its record (:func:`state_dict_config`, written by ``export --format state_dict``, needed for timm
    encoders), else from the reference encoder's keys and shapes.

    Args:
        path: ``.ckpt`` written by Lightning, or a ``.pth`` state dict (the UNet's layout or the notebook's).
        image_size: side of the square network input.
        keep_aspect: letterbox instead of stretching.
        mask_threshold: mask probability threshold.
        model_class: the LightningModule class of the checkpoint (a research subclass); default
            :class:`~brain_mtl.module.BrainTumorModule`.
        weights_only: read the file with ``torch.load(weights_only=True)``, which refuses pickled code. Set False
            only for a checkpoint you trust that holds other objects.

    Returns:
        A :class:`LoadedCheckpoint` with the network on the CPU in eval mode.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: (a ValueError) the file is empty, damaged, refused as unsafe, or holds non-finite weights
            (see :func:`read_checkpoint`).
        ValueError: the file is neither a Lightning checkpoint nor a state dict this package can load.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    content = read_checkpoint(path, weights_only=weights_only)

    data_hparams: dict[str, Any] = {}
    module = None
    threshold_default = 0.5
    if "state_dict" in content and "hyper_parameters" in content:
        from brain_mtl.module import BrainTumorModule

        cls = model_class or BrainTumorModule
        module = cls.load_from_checkpoint(path, map_location="cpu", weights_only=weights_only)
        module.eval()
        model = module.model
        threshold_default = float(module.hparams.get("mask_threshold", 0.5))
        data_hparams = dict(content.get("datamodule_hyper_parameters") or {})
        num_classes = int(module.hparams.get("num_classes", len(CLASS_NAMES)))
    elif content and all(isinstance(v, Tensor) for v in content.values()):
        model = _unet_from_state_dict(path, content)
        num_classes = int(model.num_classes)
    else:
        raise ValueError(
            f"{path}: not a Lightning checkpoint (keys 'state_dict' and 'hyper_parameters') nor a flat state dict; "
            f"top-level keys: {sorted(map(str, content))[:10]}"
        )

    if image_size is not None and (not isinstance(image_size, int) or isinstance(image_size, bool) or image_size < 1):
        raise ValueError(f"image_size must be a positive number of pixels, got {image_size!r}")
    size = int(image_size if image_size is not None else data_hparams.get("image_size") or DEFAULT_IMAGE_SIZE)
    letterbox = keep_aspect if keep_aspect is not None else bool(data_hparams.get("keep_aspect", False))
    names = class_names_for(num_classes)
    return LoadedCheckpoint(
        model=model,
        preprocessing=Preprocessing(image_size=size, keep_aspect=letterbox),
        mask_threshold=float(mask_threshold) if mask_threshold is not None else threshold_default,
        class_names=names,
        module=module,
        source=str(path),
    )
