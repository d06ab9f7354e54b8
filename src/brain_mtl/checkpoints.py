"""Reading a checkpoint safely: the one reader of every command, callback and the app.

Lightning checkpoints and state-dict files are read with ``torch.load(weights_only=True)`` (a crafted file cannot
run code), local files memory-mapped and remote ones (``https://``, ``s3://``) through fsspec; an empty, damaged
or diverged (non-finite) file is one :class:`~brain_mtl.errors.CheckpointError` naming it and the fix. The
architecture a state-dict export records (:data:`STATE_DICT_CONFIG_KEY`) is read here too. Nothing here builds a
network: :mod:`brain_mtl.inference.checkpoint` does, from what this module reads.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import fsspec
import torch
from torch import Tensor

from brain_mtl.classes import CLASS_NAMES
from brain_mtl.errors import CheckpointError

__all__ = [
    "STATE_DICT_CONFIG_KEY",
    "class_names_for",
    "first_non_finite",
    "is_remote",
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


def first_non_finite(state_dict: dict[str, Any]) -> str | None:
    """Key of the first floating-point tensor holding NaN or infinity, else None."""
    for key, value in state_dict.items():
        if isinstance(value, Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            return key
    return None


def read_checkpoint(path: str | os.PathLike, *, weights_only: bool = True) -> dict[str, Any]:
    """Read a checkpoint file safely and check that it can be used; the one reader of the command line.

    Args:
        path: a local file, or a URL (``https://``, ``s3://``: read through fsspec, also with
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
            with fsspec.open(source, "rb") as handle:
                content = torch.load(handle, map_location="cpu", weights_only=weights_only)
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
