"""``python -m brain_mtl export``: a checkpoint as ONNX (checked with ONNX Runtime) or as a state dict."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from torch import nn

from brain_mtl.commands.base import UsageError, checkpoint_errors, run_command
from brain_mtl.errors import WriteError
from brain_mtl.files import atomic_path
from brain_mtl.inference.checkpoint import load_checkpoint
from brain_mtl.inference.export import (
    ONNX_INPUT,
    ONNX_OUTPUTS,
    check_onnx,
    export_onnx,
    export_reference,
    export_state_dict,
    onnx_metadata,
    parity_error,
    unet_config,
)
from brain_mtl.models import config_of

__all__ = ["export", "export_main"]


def export(
    ckpt_path: str,
    output: str,
    format: Literal["onnx", "state_dict", "reference"] = "onnx",
    image_size: list[int] | None = None,
    opset: int = 17,
    exporter: Literal["auto", "torchscript", "dynamo"] = "auto",
    atol: float = 1e-3,
    check: bool = True,
) -> int:
    """Export a trained checkpoint to ONNX, to the network's state dict, or to the reference notebook's layout.

    The ONNX file is run with ONNX Runtime on two input sizes and compared with PyTorch; the exit status is 1
    when they differ by more than --atol, when a package is missing, or when the checkpoint cannot be loaded,
    2 on a usage error.

    Args:
        ckpt_path: Lightning checkpoint (.ckpt), a state-dict file, or an ensemble file (.yaml, as
            ``python -m brain_mtl cv`` writes it: one ONNX graph that averages the members).
        output: file to write.
        format: onnx: graph with outputs mask_logits and class_logits, dynamic batch and size; state_dict:
            torch.save(unet.state_dict()) with the architecture recorded; reference: the notebook's CustomUNet key
            layout.
        image_size: ONNX example input side (or height width); default: the checkpoint's training size.
        opset: ONNX opset.
        exporter: torchscript, dynamo, or auto (torchscript where this PyTorch has it).
        atol: largest accepted max abs difference between ONNX Runtime and PyTorch logits.
        check: compare ONNX Runtime with PyTorch after the export (--no_check: skip it).

    Returns:
        The exit status.

    Raises:
        UsageError: ``--format reference`` for a timm encoder, or an image size the network cannot take.
        brain_mtl.errors.CheckpointError: the checkpoint cannot be loaded.
    """
    path = Path(output)
    if _same_file(path, Path(ckpt_path)):
        raise UsageError(
            f"--output {output} is the checkpoint given as --ckpt_path: the export would replace it. Write the "
            "export to another file (e.g. model.onnx)."
        )
    with checkpoint_errors(ckpt_path):
        loaded = load_checkpoint(ckpt_path)
    model = loaded.model.cpu().eval()
    if loaded.members and format != "onnx":
        raise UsageError(
            f"--ckpt_path {ckpt_path} is an ensemble file ({len(loaded.members)} member(s), temperature "
            f"{loaded.temperature:g}): it exports to one ONNX "
            "graph (--format onnx); export a member's checkpoint for a state dict"
        )
    _make_parent(path)
    config = config_of(model)
    encoder = config.encoder if config is not None else "reference"
    if format == "reference" and encoder != "reference":
        raise UsageError(
            f"--format reference needs the reference encoder; this network's encoder is {encoder!r}, which the "
            "notebook's CustomUNet does not have: use --format state_dict or onnx"
        )
    if format == "state_dict":
        with atomic_path(path) as partial:
            export_state_dict(model, partial)
        print(f"wrote {path} (UNet state dict; architecture: {_architecture(model)})")
        return 0
    if format == "reference":
        with atomic_path(path) as partial:
            export_reference(model, partial)
        print(f"wrote {path} (reference-notebook layout; architecture: {_architecture(model)})")
        return 0

    stride = int(getattr(model, "output_stride", 1))
    if image_size is not None and len(image_size) not in (1, 2):
        raise UsageError("--image_size takes one side or a height and a width")
    sides = image_size or [loaded.preprocessing.image_size]
    size = (sides[0], sides[-1])
    if size[0] % stride or size[1] % stride:
        raise UsageError(f"--image_size {size} must be a multiple of {stride} (the output stride)")
    try:
        with atomic_path(path) as partial:  # a failed export leaves the previous file as it was
            export_onnx(model, partial, size, opset=opset, exporter=exporter, metadata=onnx_metadata(loaded))
    except (ImportError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {path} (inputs: {ONNX_INPUT}; outputs: {', '.join(ONNX_OUTPUTS)}; dynamic batch and size)")
    if not check:
        return 0
    # Two sizes, one of them non-square and batched, so that a graph frozen to the example shape is caught.
    shapes = [(1, *size), (2, size[0] + stride, size[1] + 2 * stride)]
    try:
        diffs = check_onnx(path, model, shapes)
    except ImportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for (batch, height, width), diff in diffs.items():
        print(f"onnxruntime vs torch, input ({batch}, 3, {height}, {width}): max abs diff {diff:.3g}")
    problem = parity_error(diffs, atol)
    if problem is not None:
        print(f"error: parity check failed: {problem}", file=sys.stderr)
        return 1
    return 0


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file (through links and relative spellings too)."""
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def _make_parent(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise WriteError(
            f"cannot write {path}: its folder {path.parent} cannot be created ({error.strerror or error}). "
            "Choose another --output."
        ) from error


def _architecture(model: nn.Module) -> str:
    """The architecture as ``UNet`` arguments, e.g. ``encoder='resnet18', in_channels=3, ...``."""
    config = unet_config(model)
    ordered = {"encoder": config.pop("encoder")} if "encoder" in config else {}
    ordered.update(config)
    return ", ".join(f"{k}={v!r}" for k, v in ordered.items())


def export_main(argv: Sequence[str] | None = None) -> int:
    """``python -m brain_mtl export``: :func:`export` from the command line.

    Args:
        argv: arguments without the program and command names (default: ``sys.argv[1:]``).

    Returns:
        The exit status.
    """
    return run_command(export, argv, "brain_mtl export")
