"""Export a trained network: ONNX (checked with ONNX Runtime), its own state dict, or the reference notebook's layout.

The functions behind ``python -m brain_mtl export --ckpt_path last.ckpt --format onnx --output model.onnx``
(the command itself is :mod:`brain_mtl.commands.export`).

The ONNX graph has one input, ``image`` ``(B, 3, H, W)`` (ImageNet-normalised, ``H`` and ``W`` multiples of the
network's ``output_stride``: ``2**depth`` for the reference encoder, 32 for timm encoders), and two named outputs,
``mask_logits`` ``(B, 1, H, W)`` and ``class_logits`` ``(B, C)``; batch, height and width are dynamic. The
preprocessing a caller must reproduce (image size, letterbox, mean and std, class names, mask threshold) is stored
in the model's metadata (``onnx.load(f).metadata_props``), with the encoder's name and its own normalisation
(``encoder``, ``encoder_normalization``: applied inside the graph, for information).
"""

from __future__ import annotations

import importlib
import json
import math
import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor, nn

from brain_mtl.checkpoints import STATE_DICT_CONFIG_KEY
from brain_mtl.models import config_of

if TYPE_CHECKING:
    from brain_mtl.inference.checkpoint import LoadedCheckpoint

__all__ = [
    "ONNX_INPUT",
    "ONNX_OUTPUTS",
    "OnnxExportWrapper",
    "check_onnx",
    "export_onnx",
    "export_reference",
    "export_state_dict",
    "onnx_metadata",
    "parity_error",
    "unet_config",
]

ONNX_INPUT = "image"
"""Name of the ONNX graph's input."""
ONNX_OUTPUTS = ("mask_logits", "class_logits")
"""Names of the ONNX graph's outputs, in order."""

Exporter = Literal["auto", "torchscript", "dynamo"]


class OnnxExportWrapper(nn.Module):
    """Returns the network's outputs as a plain tuple ``(mask_logits, class_logits)``, the form ONNX export takes.

    Args:
        model: a network whose ``forward`` returns :class:`~brain_mtl.models.UNetOutput` (or a 2-tuple).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, 3, H, W)`` -> ``(mask_logits (B, 1, H, W), class_logits (B, C))``."""
        mask_logits, class_logits = self.model(image)
        return mask_logits, class_logits


def _require(module: str, purpose: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"{purpose} needs the `{module}` package, which is not installed. Install the export extras: "
            "pip install 'brain-mtl[export]'  (onnx, onnxscript, onnxruntime)."
        ) from error


def _size_pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    values = [int(v) for v in size]
    return (values[0], values[0]) if len(values) == 1 else (values[0], values[1])


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    image_size: int | Sequence[int] = 256,
    *,
    opset: int = 17,
    exporter: Exporter = "auto",
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write the network as ONNX with dynamic batch, height and width.

    Args:
        model: the network (e.g. :class:`~brain_mtl.models.UNet`); exported in eval mode, its own mode restored.
        path: the ``.onnx`` file to write (parent folders are created).
        image_size: side or ``(height, width)`` of the example input used for tracing; any multiple of
            ``2**depth`` works afterwards.
        opset: ONNX opset (17 by default; the dynamo exporter uses at least 18).
        exporter: ``torchscript`` (``torch.onnx.export(dynamo=False)``: fast, dynamic axes by name), ``dynamo``
            (``torch.export`` based) or ``auto`` (torchscript where this PyTorch still has it, else dynamo).
        metadata: extra ``key -> value`` pairs stored in the model's ``metadata_props`` (non-strings as JSON).

    Returns:
        The path written.

    Raises:
        ImportError: ``onnx`` (or, for the dynamo exporter, ``onnxscript``) is not installed; the message says
            how to install it.
    """
    onnx = _require("onnx", "ONNX export")
    # Serialised first (strict JSON: NaN and infinity are refused), so that a bad value writes no file.
    entries = {str(key): _metadata_value(str(key), value) for key, value in (metadata or {}).items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = _size_pair(image_size)
    wrapper = OnnxExportWrapper(model)
    was_training = model.training
    wrapper.eval()
    example = torch.randn(1, _in_channels(model), height, width)
    try:
        example = example.to(next(model.parameters()).device)
    except StopIteration:
        pass
    if exporter not in ("auto", "torchscript", "dynamo"):
        raise ValueError(f"exporter must be 'auto', 'torchscript' or 'dynamo', got {exporter!r}")
    try:
        with torch.no_grad():
            if exporter == "dynamo" or (exporter == "auto" and not _has_torchscript_exporter()):
                _export_dynamo(wrapper, example, path, opset)
            elif exporter == "torchscript":
                _export_torchscript(wrapper, example, path, opset)
            else:
                try:
                    _export_torchscript(wrapper, example, path, opset)
                except Exception as error:  # a PyTorch whose TorchScript exporter is gone or broken
                    warnings.warn(
                        f"TorchScript ONNX export failed ({type(error).__name__}: {error}); using the dynamo exporter",
                        stacklevel=2,
                    )
                    _export_dynamo(wrapper, example, path, opset)
    finally:
        model.train(was_training)
    if entries:
        proto = onnx.load(str(path))
        for key, value in entries.items():
            entry = proto.metadata_props.add()
            entry.key = key
            entry.value = value
        onnx.save(proto, str(path))
    return path


def _metadata_value(key: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, allow_nan=False)
    except ValueError as error:  # NaN or infinity: a broken checkpoint setting, not something to ship
        raise ValueError(f"ONNX metadata {key!r} = {value!r} is not finite; strict JSON cannot hold it") from error


def _export_torchscript(wrapper: nn.Module, example: Tensor, path: Path, opset: int) -> None:
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated upstream; it stays the default here because it exports this
        # network in well under a second with named dynamic axes.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        torch.onnx.export(
            wrapper,
            (example,),
            str(path),
            input_names=[ONNX_INPUT],
            output_names=list(ONNX_OUTPUTS),
            dynamic_axes={
                ONNX_INPUT: {0: "batch", 2: "height", 3: "width"},
                ONNX_OUTPUTS[0]: {0: "batch", 2: "height", 3: "width"},
                ONNX_OUTPUTS[1]: {0: "batch"},
            },
            opset_version=opset,
            dynamo=False,
        )


def _export_dynamo(wrapper: nn.Module, example: Tensor, path: Path, opset: int) -> None:
    _require("onnxscript", "ONNX export with the dynamo exporter")
    dims = {0: torch.export.Dim("batch", max=4096), 2: torch.export.Dim.AUTO, 3: torch.export.Dim.AUTO}
    program = torch.onnx.export(
        wrapper,
        (example,),
        input_names=[ONNX_INPUT],
        output_names=list(ONNX_OUTPUTS),
        dynamic_shapes=(dims,),
        # The dynamo exporter starts at opset 18; asking for less triggers a down-conversion that fails for
        # Reduce* ops and prints a traceback.
        opset_version=max(opset, 18),
        dynamo=True,
        verbose=False,
    )
    program.save(str(path))


def _has_torchscript_exporter() -> bool:
    import inspect

    try:
        return "dynamo" in inspect.signature(torch.onnx.export).parameters
    except (TypeError, ValueError):
        return False


def check_onnx(
    path: str | os.PathLike,
    model: nn.Module,
    shapes: Iterable[tuple[int, int, int]],
    *,
    seed: int = 0,
) -> dict[tuple[int, int, int], float]:
    """Run an ONNX file with ONNX Runtime (CPU) and the network with PyTorch on the same random inputs.

    Args:
        path: the ``.onnx`` file.
        model: the network it was exported from (compared in eval mode, float32, on the CPU).
        shapes: ``(batch, height, width)`` of each input to compare.
        seed: seed of the random inputs.

    Returns:
        ``{(batch, height, width): max abs difference}`` over both outputs (mask and class logits); NaN when
        either side's outputs hold NaN or infinity (no parity can be shown then: see :func:`parity_error`).

    Raises:
        ImportError: onnxruntime is not installed.
        ValueError: the ONNX outputs are not named ``mask_logits`` and ``class_logits``.
    """
    ort = _require("onnxruntime", "Checking an ONNX export")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = tuple(output.name for output in session.get_outputs())
    if names != ONNX_OUTPUTS:
        raise ValueError(f"{path}: ONNX outputs are {names}, expected {ONNX_OUTPUTS}")
    wrapper = OnnxExportWrapper(model)
    was_training = model.training
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    in_channels = _in_channels(model)
    diffs: dict[tuple[int, int, int], float] = {}
    try:
        model.eval()
        for batch, height, width in shapes:
            x = torch.randn(batch, in_channels, height, width, generator=generator)
            onnx_outputs = session.run(list(ONNX_OUTPUTS), {ONNX_INPUT: x.numpy()})
            with torch.no_grad():
                torch_outputs = wrapper(x.to(device))
            diffs[(batch, height, width)] = _max_abs_diff(
                [torch.from_numpy(o) for o in onnx_outputs], [t.float().cpu() for t in torch_outputs]
            )
    finally:
        model.train(was_training)
    return diffs


def _max_abs_diff(first: Sequence[Tensor], second: Sequence[Tensor]) -> float:
    """Largest absolute difference over pairs of tensors; NaN when any value on either side is not finite.

    Python's ``max`` and ``>`` let NaN through (``max(0.1, nan) == 0.1``, ``nan > tol`` is False), so the
    non-finite case is made explicit here rather than left to comparison order.
    """
    worst = 0.0
    for a, b in zip(first, second, strict=True):
        if not (bool(torch.isfinite(a).all()) and bool(torch.isfinite(b).all())):
            return math.nan
        if a.numel():
            worst = max(worst, float((a - b).abs().max()))
    return worst


def parity_error(diffs: dict[tuple[int, int, int], float], atol: float) -> str | None:
    """Why an ONNX export fails its parity check with PyTorch (:func:`check_onnx`'s result), or None if it passes.

    Passes only when every difference is a finite number ``<= atol``: a NaN difference (non-finite outputs,
    e.g. NaN weights or an overflowing network) fails, and so does an empty comparison.
    """
    if not diffs:
        return "no input was compared"
    for (batch, height, width), diff in diffs.items():
        if not math.isfinite(diff):
            return (
                f"outputs at input ({batch}, 3, {height}, {width}) are not finite (NaN or infinity), so ONNX "
                "Runtime and PyTorch cannot be shown to agree (non-finite weights, a network that overflows, or a "
                "broken export)"
            )
    worst = max(diffs.values())
    if not worst <= atol:
        return f"max abs diff {worst:.3g} exceeds --atol {atol:g}"
    return None


def unet_config(model: nn.Module) -> dict[str, Any]:
    """The :class:`~brain_mtl.models.UNet` constructor arguments that rebuild a network: ``model.config.arguments()``.

    ``UNet(**unet_config(model))`` takes ``model.state_dict()``.

    Raises:
        ValueError: the network is not a brain_mtl UNet (a research network has no recorded architecture).
    """
    config = config_of(model)
    if config is None:
        raise ValueError(
            f"{type(model).__name__} is not a brain_mtl UNet: its architecture cannot be recorded; save its "
            "state_dict with torch.save and rebuild it with its own class"
        )
    return config.arguments()


def export_state_dict(model: nn.Module, path: str | os.PathLike) -> Path:
    """Write the network's own ``state_dict()`` (keys ``encoder.0...``, or ``encoder.model...`` for a timm encoder).

    The file is what ``torch.save(model.state_dict())`` writes, with the architecture (:func:`unet_config`) added to
    the state dict's ``_metadata`` (where PyTorch keeps each module's version) under
    ``_metadata[""]["brain_mtl_unet"]``. Load it with ``UNet(**same_arguments).load_state_dict(torch.load(path))``
    (e.g. ``UNet(encoder="resnet34", classifier_hidden=256)``), or with
    :meth:`brain_mtl.Predictor.from_checkpoint`, which rebuilds the architecture from that entry (or, for the
    reference encoder, from the weights).
    """
    from collections import OrderedDict

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = model.state_dict()
    saved: OrderedDict[str, Tensor] = OrderedDict((k, v.detach().cpu()) for k, v in state.items())
    metadata = {key: dict(value) for key, value in (getattr(state, "_metadata", None) or {}).items()}
    metadata.setdefault("", {})[STATE_DICT_CONFIG_KEY] = unet_config(model)
    saved._metadata = metadata  # type: ignore[attr-defined]
    torch.save(saved, path)
    return path


def export_reference(model: nn.Module, path: str | os.PathLike) -> Path:
    """Write the weights in the reference notebook's ``CustomUNet`` layout (``inc``, ``down1``, ... ``classifier``).

    The notebook's ``model.load_state_dict(torch.load(path))`` accepts it when the network has the notebook's
    shape (``base_channels=64``, ``depth=4``, ``classifier_hidden=256``); :meth:`UNet.from_reference` loads any.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().cpu() for k, v in model.reference_state_dict().items()}, path)
    return path


def onnx_metadata(loaded: LoadedCheckpoint) -> dict[str, Any]:
    """What a caller of the ONNX graph must know to feed it, stored in the file's ``metadata_props``.

    Args:
        loaded: the checkpoint the graph is exported from (:func:`~brain_mtl.inference.load_checkpoint`).

    Returns:
        ``producer``, ``class_names``, ``image_size``, ``keep_aspect``, ``mean``, ``std``, ``mask_threshold``,
        ``output_stride``, ``input_layout``, ``encoder``, ``encoder_normalization``, ``ensemble_members`` and
        ``class_temperature``.
    """
    model = loaded.model
    return {
        "producer": "brain_mtl",
        "class_names": list(loaded.class_names),
        "image_size": loaded.preprocessing.image_size,
        "keep_aspect": loaded.preprocessing.keep_aspect,
        "mean": list(loaded.preprocessing.mean),
        "std": list(loaded.preprocessing.std),
        "mask_threshold": loaded.mask_threshold,
        "output_stride": int(getattr(model, "output_stride", 1)),
        "input_layout": "RGB, (B, 3, H, W), float32, (x / 255 - mean) / std",
        # The encoder's own pixel normalisation is applied inside the graph (InputAdapter): for information only,
        # the input stays (x / 255 - mean) / std with the mean and std above.
        "encoder": config.encoder if (config := config_of(model)) is not None else "reference",
        "encoder_normalization": dict(getattr(model, "normalization", None) or {}),
        # An ensemble file's members (the graph averages their probabilities); empty for one checkpoint.
        "ensemble_members": [Path(member).name for member in loaded.members],
        # The class head's temperature (python -m brain_mtl calibrate), applied inside the graph; 1: none.
        "class_temperature": loaded.temperature,
    }


def _in_channels(model: nn.Module) -> int:
    config = config_of(model)
    return config.in_channels if config is not None else 3
