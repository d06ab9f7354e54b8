"""Restore a network for prediction from a Lightning checkpoint, a state-dict file or an ensemble file.

An ensemble file (``.yaml``, as ``python -m brain_mtl cv`` writes it, or by hand) lists checkpoints whose averaged
probabilities are the prediction::

    ensemble:
      members: [fold0/checkpoints/best.ckpt, fold1/checkpoints/best.ckpt]   # relative to the file's folder

It is accepted wherever one checkpoint is: ``predict-images``, ``export`` and the app. ``temperature: T`` beside
``members`` (``python -m brain_mtl calibrate`` writes it) divides the class log-probabilities by ``T``: a file with
one member and a temperature is a calibrated checkpoint.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from torch import Tensor, nn

from brain_mtl.checkpoints import (  # the moved names stay importable from here for one release
    STATE_DICT_CONFIG_KEY,
    class_names_for,
    first_non_finite,
    is_remote,
    read_checkpoint,
    state_dict_config,
)
from brain_mtl.classes import CLASS_NAMES
from brain_mtl.errors import CheckpointError
from brain_mtl.inference.preprocessing import DEFAULT_IMAGE_SIZE, Preprocessing
from brain_mtl.models import EnsembleNet, UNet
from brain_mtl.models.reference import to_reference_keys
from brain_mtl.task.module import BrainTumorModule

__all__ = [
    "ENSEMBLE_SUFFIXES",
    "STATE_DICT_CONFIG_KEY",
    "LoadedCheckpoint",
    "class_names_for",
    "ensemble_members",
    "ensemble_temperature",
    "first_non_finite",
    "is_ensemble_file",
    "is_remote",
    "load_checkpoint",
    "read_checkpoint",
    "state_dict_config",
]


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
        members: for an ensemble file, its members' checkpoints (the model is an
            :class:`~brain_mtl.models.EnsembleNet`); empty for one checkpoint.
        temperature: the class head's temperature (an ensemble file's ``temperature``; 1: not calibrated).
    """

    model: nn.Module
    preprocessing: Preprocessing
    mask_threshold: float = 0.5
    class_names: tuple[str, ...] = tuple(CLASS_NAMES)
    module: Any = None
    source: str = ""
    members: tuple[str, ...] = ()
    temperature: float = 1.0


def _unet_from_state_dict(path: Path, state: dict[str, Tensor]) -> nn.Module:
    """A UNet holding a flat state dict: built from the recorded architecture, else read from reference keys."""
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


ENSEMBLE_SUFFIXES = (".yaml", ".yml")
"""File suffixes read as ensemble files rather than checkpoints."""


def is_ensemble_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` names an ensemble file (by its suffix)."""
    return Path(path).suffix.lower() in ENSEMBLE_SUFFIXES


def _ensemble_section(path: Path) -> dict[str, Any]:
    """The ``ensemble:`` mapping of an ensemble file."""
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise CheckpointError(f"{path}: cannot read it as an ensemble file ({error})") from error
    section = content.get("ensemble") if isinstance(content, dict) else None
    return section if isinstance(section, dict) else {}


def ensemble_temperature(path: str | os.PathLike) -> float:
    """An ensemble file's ``temperature`` (1 when it has none).

    Raises:
        CheckpointError: the temperature is not a positive number.
    """
    value = _ensemble_section(Path(path)).get("temperature", 1.0)
    if isinstance(value, bool) or not isinstance(value, int | float) or not (math.isfinite(value) and value > 0):
        raise CheckpointError(
            f"{path}: ensemble.temperature must be a positive number (as `python -m brain_mtl calibrate` writes "
            f"it), got {value!r}"
        )
    return float(value)


def ensemble_members(path: str | os.PathLike) -> list[Path]:
    """The member checkpoints an ensemble file lists, relative paths resolved against the file's folder.

    Raises:
        CheckpointError: the file is not an ensemble file (``ensemble: members: [...]``), or a member is missing.
    """
    path = Path(path)
    members = _ensemble_section(path).get("members")
    if not isinstance(members, list) or not members or not all(isinstance(m, str) for m in members):
        raise CheckpointError(
            f"{path}: not an ensemble file: expected `ensemble: {{members: [checkpoint, ...]}}` (as "
            "`python -m brain_mtl cv` writes it), with one checkpoint path per member"
        )
    paths = [(path.parent / member) if not Path(member).is_absolute() else Path(member) for member in members]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise CheckpointError(f"{path}: member checkpoint(s) missing: {', '.join(missing)}")
    return paths


def _load_ensemble(path: Path, **options: Any) -> LoadedCheckpoint:
    """Every member loaded as by :func:`load_checkpoint`; they must agree on classes, input size and threshold."""
    paths = ensemble_members(path)
    temperature = ensemble_temperature(path)
    for member in paths:
        if is_ensemble_file(member):
            raise CheckpointError(f"{path}: member {member} is an ensemble file itself: list its checkpoints instead")
    loaded = [load_checkpoint(member, **options) for member in paths]
    first = loaded[0]
    for member, item in zip(paths[1:], loaded[1:], strict=True):
        for what, mine, theirs in (
            ("classes", item.class_names, first.class_names),
            ("input (image size, letterbox)", item.preprocessing, first.preprocessing),
            ("mask threshold", item.mask_threshold, first.mask_threshold),
        ):
            if mine != theirs:
                raise CheckpointError(
                    f"{path}: member {member} differs from the first member {paths[0]} in its {what}: {mine} "
                    f"against {theirs}. An ensemble's members must predict the same classes from the same input."
                )
    return LoadedCheckpoint(
        model=EnsembleNet([item.model for item in loaded], temperature=temperature).eval(),
        preprocessing=first.preprocessing,
        mask_threshold=first.mask_threshold,
        class_names=first.class_names,
        module=None,
        source=str(path),
        members=tuple(str(p) for p in paths),
        temperature=temperature,
    )


def load_checkpoint(
    path: str | os.PathLike,
    *,
    image_size: int | None = None,
    keep_aspect: bool | None = None,
    mask_threshold: float | None = None,
    model_class: type | None = None,
    weights_only: bool = True,
) -> LoadedCheckpoint:
    """Restore a network from a checkpoint, a ``state_dict`` export, a reference-notebook file or an ensemble file.

    For an ensemble file (:func:`ensemble_members`) every member is loaded so, and the network is their
    :class:`~brain_mtl.models.EnsembleNet`.

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
            :class:`~brain_mtl.task.module.BrainTumorModule`.
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
    if is_ensemble_file(path):
        options = {"image_size": image_size, "keep_aspect": keep_aspect, "mask_threshold": mask_threshold}
        return _load_ensemble(path, **options, model_class=model_class, weights_only=weights_only)
    content = read_checkpoint(path, weights_only=weights_only)

    data_hparams: dict[str, Any] = {}
    module = None
    threshold_default = 0.5
    if "state_dict" in content and "hyper_parameters" in content:
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
