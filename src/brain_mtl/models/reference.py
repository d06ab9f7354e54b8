"""The reference notebook's state-dict layout, and safe loading of its weight files.

The notebook's ``CustomUNet`` names its modules ``inc``, ``down1..4``, ``up1..4``, ``att1..4``,
``conv_up1..4``, ``outc`` and ``classifier``; :class:`~brain_mtl.models.UNet` builds the same layers from
lists. This module translates keys between the two layouts, one key at a time:

=====================================  =========================================
UNet key                               reference key
=====================================  =========================================
``encoder.0.{i}.*``                    ``inc.conv.{i}.*``
``encoder.{k}.1.{i}.*`` (k >= 1)       ``down{k}.1.conv.{i}.*``
``classification_head.mlp.{i}.*``      ``classifier.{i}.*``
``decoder.{j}.up.*``                   ``up{j+1}.*``
``decoder.{j}.gate.gate_proj.*``       ``att{j+1}.W_g.*``
``decoder.{j}.gate.skip_proj.*``       ``att{j+1}.W_x.*``
``decoder.{j}.gate.psi.*``             ``att{j+1}.psi.*``
``decoder.{j}.conv.{i}.*``             ``conv_up{j+1}.conv.{i}.*``
``segmentation_head.*``                ``outc.*``
=====================================  =========================================

Keys carry no information on the order in which a decoder stage concatenates the gated skip and the
upsampled feature; this library uses ``[skip, upsampled]``, the usual order of U-Net notebooks.
"""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "check_fits",
    "describe",
    "from_reference_keys",
    "infer_config",
    "load_state_dict_file",
    "to_reference_keys",
]

_GATE_TO_REFERENCE = {"gate_proj": "W_g", "skip_proj": "W_x", "psi": "psi"}
_GATE_FROM_REFERENCE = {v: k for k, v in _GATE_TO_REFERENCE.items()}
# Prefixes that wrappers add to every key: nn.DataParallel / DDP and torch.compile.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_SHOWN = 5  # keys of each kind named in an error message


def _to_reference_key(key: str) -> str:
    if m := re.fullmatch(r"encoder\.0\.(\d+\..+)", key):
        return f"inc.conv.{m[1]}"
    if m := re.fullmatch(r"encoder\.(\d+)\.1\.(\d+\..+)", key):
        return f"down{m[1]}.1.conv.{m[2]}"
    if m := re.fullmatch(r"classification_head\.mlp\.(.+)", key):
        return f"classifier.{m[1]}"
    if m := re.fullmatch(r"decoder\.(\d+)\.up\.(.+)", key):
        return f"up{int(m[1]) + 1}.{m[2]}"
    if m := re.fullmatch(r"decoder\.(\d+)\.gate\.(gate_proj|skip_proj|psi)\.(.+)", key):
        return f"att{int(m[1]) + 1}.{_GATE_TO_REFERENCE[m[2]]}.{m[3]}"
    if m := re.fullmatch(r"decoder\.(\d+)\.conv\.(.+)", key):
        return f"conv_up{int(m[1]) + 1}.conv.{m[2]}"
    if m := re.fullmatch(r"segmentation_head\.(.+)", key):
        return f"outc.{m[1]}"
    raise KeyError(f"no reference-notebook name for UNet key {key!r}")


def _from_reference_key(key: str) -> str | None:
    if m := re.fullmatch(r"inc\.conv\.(\d+\..+)", key):
        return f"encoder.0.{m[1]}"
    if m := re.fullmatch(r"down([1-9]\d*)\.1\.conv\.(\d+\..+)", key):
        return f"encoder.{m[1]}.1.{m[2]}"
    if m := re.fullmatch(r"classifier\.(.+)", key):
        return f"classification_head.mlp.{m[1]}"
    if m := re.fullmatch(r"up([1-9]\d*)\.(.+)", key):
        return f"decoder.{int(m[1]) - 1}.up.{m[2]}"
    if m := re.fullmatch(r"att([1-9]\d*)\.(W_g|W_x|psi)\.(.+)", key):
        return f"decoder.{int(m[1]) - 1}.gate.{_GATE_FROM_REFERENCE[m[2]]}.{m[3]}"
    if m := re.fullmatch(r"conv_up([1-9]\d*)\.conv\.(.+)", key):
        return f"decoder.{int(m[1]) - 1}.conv.{m[2]}"
    if m := re.fullmatch(r"outc\.(.+)", key):
        return f"segmentation_head.{m[1]}"
    return None


def to_reference_keys(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename a :class:`~brain_mtl.models.UNet` state dict to the reference layout (same order, same tensors).

    Args:
        state_dict: ``UNet.state_dict()``.

    Returns:
        The same tensors under the notebook's keys.

    Raises:
        KeyError: A key that is not part of a UNet.
    """
    return {_to_reference_key(key): value for key, value in state_dict.items()}


def from_reference_keys(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename a reference-layout state dict to the :class:`~brain_mtl.models.UNet` layout.

    Keys that have no UNet name are kept as they are, so that ``load_state_dict`` reports them.

    Args:
        state_dict: A state dict in the notebook's layout.

    Returns:
        The same tensors under UNet keys.
    """
    return {_from_reference_key(key) or key: value for key, value in state_dict.items()}


def describe(path_or_state_dict: Any) -> str:
    """How to name the source of weights in a message."""
    if isinstance(path_or_state_dict, (str, os.PathLike)):
        return f"'{os.fspath(path_or_state_dict)}'"
    return "the given state dict"


def load_state_dict_file(path_or_state_dict: str | os.PathLike | Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Read a state dict safely (``weights_only=True``) and check that it is a flat ``str -> Tensor`` dict.

    Key prefixes added by ``nn.DataParallel``/DDP (``module.``) and ``torch.compile`` (``_orig_mod.``) are
    removed.

    Args:
        path_or_state_dict: A ``.pth`` file path, or an already loaded state dict.

    Returns:
        The state dict, on the CPU.

    Raises:
        FileNotFoundError: No such file.
        ValueError: The file is not a readable PyTorch file, holds objects that loading would have to run
            code for, or does not hold a ``str -> Tensor`` dict.
        TypeError: Neither a path nor a mapping was given.
    """
    source = describe(path_or_state_dict)
    if isinstance(path_or_state_dict, (str, os.PathLike)):
        path = Path(path_or_state_dict)
        if not path.is_file():
            raise FileNotFoundError(f"No weights file at {source}.")
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as error:
            detail = _unpickler_detail(str(error))
            # "Unsupported global: GLOBAL exec ..." (older torch: "Unsupported class ..."): the pickle names a
            # callable or class to rebuild, which is how pickles run code.
            if "global" in detail.lower() or "unsupported class" in detail.lower():
                raise ValueError(
                    f"Refused to load {source}: it refers to Python objects other than tensors, and rebuilding "
                    "them could run arbitrary code, so it was not read (torch.load(weights_only=True)). A state "
                    "dict saved with torch.save(model.state_dict(), path) loads fine. If you trust the file and "
                    "know what it holds, load it yourself and pass the state dict to UNet.from_reference(). "
                    f"Detail: {detail}"
                ) from error
            raise ValueError(
                f"Could not read {source} as a PyTorch weights file (written by torch.save); it may be "
                f"truncated or not a PyTorch file at all. Detail: {detail}"
            ) from error
        except Exception as error:  # torch reports corrupt files as RuntimeError, EOFError, ...
            raise ValueError(
                f"Could not read {source} as a PyTorch weights file (written by torch.save): "
                f"{type(error).__name__}: {error}"
            ) from error
    elif isinstance(path_or_state_dict, Mapping):
        obj = path_or_state_dict
    else:
        raise TypeError(f"Expected a path to a .pth file or a state dict, got {type(path_or_state_dict).__name__}.")

    if not isinstance(obj, Mapping):
        raise ValueError(f"{source} holds a {type(obj).__name__}, not a state dict (a dict of tensors).")
    non_tensors = [key for key, value in obj.items() if not isinstance(value, Tensor)]
    if non_tensors:
        raise ValueError(
            f"{source} is not a plain state dict: entries {non_tensors[:_SHOWN]} are not tensors (top-level keys: "
            f"{list(obj)[:10]}). If it is a checkpoint that wraps the weights, e.g. under 'state_dict' or "
            "'model_state_dict', pass that entry: UNet.from_reference(torch.load(path, weights_only=True)[key])."
        )
    state_dict = {str(key): value for key, value in obj.items()}
    for prefix in _WRAPPER_PREFIXES:
        if state_dict and all(key.startswith(prefix) for key in state_dict):
            state_dict = {key[len(prefix) :]: value for key, value in state_dict.items()}
    return state_dict


def _unpickler_detail(message: str) -> str:
    # torch's weights_only error is a long how-to; the line that says what was refused is the useful one.
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    for i, line in enumerate(lines):
        if "WeightsUnpickler error:" in line:
            rest = line.split("WeightsUnpickler error:", 1)[1].strip()
            return rest or (lines[i + 1] if i + 1 < len(lines) else line)
    return lines[0] if lines else message


def infer_config(state_dict: Mapping[str, Tensor]) -> dict[str, Any]:
    """Read the UNet constructor arguments from reference-layout weights.

    Args:
        state_dict: Weights in the notebook's layout.

    Returns:
        ``in_channels``, ``base_channels``, ``depth``, ``attention`` and, where the classifier's weights are
        present, ``num_classes`` and ``classifier_hidden``.

    Raises:
        ValueError: The weights are not in the reference layout.
    """
    first = state_dict.get("inc.conv.0.weight")
    if first is None or first.dim() != 4:
        if any(key.startswith(("encoder.", "decoder.")) for key in state_dict):
            hint = (
                " These keys look like a brain_mtl UNet state dict: build UNet(...) with the same arguments and "
                "call load_state_dict() on it instead."
            )
        else:
            hint = f" First keys found: {list(state_dict)[:_SHOWN]}."
        raise ValueError(
            "These weights are not in the reference notebook's layout: no 4-D 'inc.conv.0.weight' (the first "
            f"convolution).{hint}"
        )
    depth = 0
    while f"down{depth + 1}.1.conv.0.weight" in state_dict:
        depth += 1
    config: dict[str, Any] = {
        "in_channels": int(first.shape[1]),
        "base_channels": int(first.shape[0]),
        "depth": max(depth, 1),  # no down stage at all: build depth 1 and let check_fits name what is missing
        "attention": any(re.match(r"att\d+\.", key) for key in state_dict),
    }
    hidden, last = state_dict.get("classifier.0.weight"), state_dict.get("classifier.3.weight")
    if hidden is not None and hidden.dim() == 2:
        config["classifier_hidden"] = int(hidden.shape[0])
    if last is not None and last.dim() == 2:
        config["num_classes"] = int(last.shape[0])
    return config


def check_fits(expected: Mapping[str, Tensor], given: Mapping[str, Tensor], source: str, model_desc: str) -> None:
    """Compare two reference-layout state dicts by keys and shapes; raise naming the first differences.

    Args:
        expected: What the model needs (``UNet.reference_state_dict()``).
        given: What the file holds.
        source: How to name the file in the message.
        model_desc: How to name the model in the message.

    Raises:
        ValueError: Keys missing, unexpected or mis-shaped.
    """
    missing = [key for key in expected if key not in given]
    unexpected = [key for key in given if key not in expected]
    misshaped = [
        f"{key}: file {tuple(given[key].shape)}, model {tuple(expected[key].shape)}"
        for key in expected
        if key in given and given[key].shape != expected[key].shape
    ]
    problems = [
        f"{len(items)} {what} (first: {', '.join(items[:_SHOWN])})"
        for what, items in (("missing keys", missing), ("unexpected keys", unexpected), ("mis-shaped", misshaped))
        if items
    ]
    if problems:
        raise ValueError(
            f"The weights in {source} do not fit {model_desc}: " + "; ".join(problems) + ". Is it a state dict of "
            "the reference notebook's CustomUNet, saved whole (not a partial or edited copy)?"
        )
