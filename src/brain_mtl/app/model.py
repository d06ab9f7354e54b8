"""The web app's model: a checkpoint or ONNX file loaded once, the facts the page shows, the page's settings."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from brain_mtl.app.onnx_model import load_onnx
from brain_mtl.checkpoints import read_checkpoint
from brain_mtl.inference import Prediction, Predictor, Preprocessing, load_checkpoint
from brain_mtl.models import config_of


@dataclass(frozen=True)
class ModelFacts:
    """What the page tells about the loaded model.

    Attributes:
        source: the file.
        kind: ``Lightning checkpoint``, ``state dict`` or ``ONNX``.
        encoder: the encoder, in words.
        image_size: side of the network input.
        keep_aspect: letterboxed input.
        mask_threshold: the model's own mask threshold (the page's default).
        class_names: the classes, in logit order.
        training_data: the data it was trained on, as the file records it.
        trained: epochs and steps, as the file records them.
        written: when the file was last written (UTC).
        parameters: number of weights (None when unknown).
    """

    source: str
    kind: str
    encoder: str
    image_size: int
    keep_aspect: bool
    mask_threshold: float
    class_names: tuple[str, ...]
    training_data: str
    trained: str
    written: str
    parameters: int | None = None

    def rows(self) -> list[tuple[str, str]]:
        """``(label, value)`` pairs for display."""
        size = f"{self.image_size} x {self.image_size} px" + (" (letterboxed)" if self.keep_aspect else "")
        rows = [
            ("File", self.source),
            ("Format", self.kind),
            ("Encoder", self.encoder),
            ("Input size", size),
            ("Classes", ", ".join(self.class_names)),
            ("Training data", self.training_data),
            ("Training", self.trained),
            ("File written", self.written),
        ]
        if self.parameters is not None:
            rows.insert(3, ("Parameters", f"{self.parameters:,}"))
        return rows


@dataclass(frozen=True)
class Settings:
    """The page's prediction settings.

    Attributes:
        mask_threshold: probability above which a pixel is tumour.
        mask_gate: empty the mask when the most probable class is ``no_tumor``.
        flip_tta: average the prediction over the scan and its mirror image.
        gradcam: also compute the Grad-CAM map of the predicted class.
    """

    mask_threshold: float = 0.5
    mask_gate: bool = False
    flip_tta: bool = False
    gradcam: bool = False


class AppModel:
    """A network loaded once and shared by every page view; each prediction wraps it in a :class:`Predictor`.

    A predictor is a few attributes around the network, so one is built per call with the page's settings
    (threshold, gate, TTA) rather than mutating a shared one. Calls are serialised by a lock: the page's sessions
    run in threads, and Grad-CAM hooks a layer of the shared network for the duration of a call.

    Args:
        model: the network (``forward(x)`` -> mask logits, class logits).
        preprocessing: its input size and letterboxing.
        facts: what the page shows about it.
        device: where it runs (``auto``: CUDA when available).
    """

    def __init__(self, model: nn.Module, preprocessing: Preprocessing, facts: ModelFacts, device: str = "auto"):
        self.model = model
        self.preprocessing = preprocessing
        self.facts = facts
        self.device = device
        # Identifies the network in the sessions' result caches: a file rewritten by training is another model.
        self.key = f"{facts.source}|{_modified_ns(facts.source)}"
        self._lock = threading.Lock()

    @property
    def hardware(self) -> str:
        """Where predictions run, in words: the CUDA device, or the number of CPU threads."""
        weight = next(self.model.parameters(), None)
        if weight is not None and weight.device.type != "cpu":
            return str(weight.device)
        return f"{torch.get_num_threads()} CPU thread{'s' if torch.get_num_threads() > 1 else ''}"

    @property
    def supports_gradcam(self) -> bool:
        """Whether Grad-CAM can run: it needs gradients, which a PyTorch network has and an ONNX graph has not."""
        return gradcam_available(self.model)

    def predictor(self, settings: Settings) -> Predictor:
        """A :class:`Predictor` around the shared network with the page's settings."""
        return Predictor(
            self.model,
            self.preprocessing,
            mask_threshold=settings.mask_threshold,
            class_names=self.facts.class_names,
            device=self.device,
            tta="flip" if settings.flip_tta else "none",
            mask_gate=settings.mask_gate,
        )

    def warm_up(self) -> None:
        """Run the network once on a blank input, so that the first scan does not pay for the kernels' set-up."""
        side = self.preprocessing.image_size
        self.predict("warm-up", np.zeros((side, side, 3), np.uint8), Settings())

    def predict(self, name: str, image: np.ndarray, settings: Settings) -> Prediction:
        """Predict one ``(H, W, 3)`` uint8 RGB scan; the prediction is named ``name``."""
        gradcam = settings.gradcam and self.supports_gradcam
        with self._lock:
            prediction = self.predictor(settings).predict(image, gradcam=gradcam)
        return dataclasses.replace(prediction, source=name)


def gradcam_available(model: nn.Module) -> bool:
    """Whether a network can be explained with Grad-CAM: a PyTorch network with weights and one bottleneck.

    An ensemble has one bottleneck per member, so none.
    """
    return any(True for _ in model.parameters()) and getattr(model, "bottleneck", None) is not None


def _modified_ns(path: str | os.PathLike) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return 0


def _file_written(path: Path) -> str:
    stamp = dt.datetime.fromtimestamp(path.stat().st_mtime, tz=dt.timezone.utc)
    return stamp.strftime("%Y-%m-%d %H:%M UTC")


def _training_data(data_hparams: dict[str, Any] | None) -> str:
    if not data_hparams:
        return "not recorded in the file"
    root = data_hparams.get("root")
    if root:
        return f"BRISC-layout folder `{root}`"
    synthetic = data_hparams.get("synthetic_root")
    if synthetic:
        count = data_hparams.get("synthetic_train")
        images = f"{count} training images, " if count else ""
        return f"synthetic scans ({images}generated into `{synthetic}`), not real MRI"
    return "not recorded in the file"


def _encoder_text(model: nn.Module, hparams: dict[str, Any]) -> str:
    config = config_of(model)
    encoder = str(hparams.get("encoder") or (config.encoder if config is not None else "reference"))
    if encoder != "reference":
        weights = hparams.get("encoder_weights")
        return f"timm `{encoder}`" + (f" (initialised from {weights})" if weights else "")
    base = hparams.get("base_channels", config.base_channels if config is not None else None)
    depth = hparams.get("depth", config.depth if config is not None else None)
    detail = ", ".join(f"{v} {k}" for k, v in (("base channels", base), ("levels", depth)) if v is not None)
    attention = " with attention gates" if hparams.get("attention") else ""
    return f"reference U-Net encoder{attention}" + (f" ({detail})" if detail else "")


def load_app_model(path: str | os.PathLike, device: str = "auto") -> AppModel:
    """Load a Lightning checkpoint, a state-dict file or an ONNX file (``python -m brain_mtl export``) for the app.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file cannot be loaded (the message names it and says why; CheckpointError is one).
        ImportError: an ONNX file without onnxruntime installed.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such model file")
    if path.suffix.lower() == ".onnx":
        network, preprocessing, info = load_onnx(path)
        facts = ModelFacts(
            source=str(path),
            kind="ONNX (run with ONNX Runtime; no Grad-CAM)",
            encoder=info["encoder"],
            image_size=preprocessing.image_size,
            keep_aspect=preprocessing.keep_aspect,
            mask_threshold=info["mask_threshold"],
            class_names=info["class_names"],
            training_data="not recorded in ONNX files",
            trained="not recorded in ONNX files",
            written=_file_written(path),
        )
        return AppModel(network, preprocessing, facts, device="cpu")

    loaded = load_checkpoint(path)
    hparams: dict[str, Any] = {}
    data_hparams: dict[str, Any] | None = None
    trained = "not recorded in the file"
    kind = "state dict"
    if loaded.members:
        names = ", ".join(Path(member).name for member in loaded.members)
        kind = f"ensemble of {len(loaded.members)} checkpoints, probabilities averaged ({names}; no Grad-CAM)"
        if len(loaded.members) == 1:
            kind = f"calibrated checkpoint ({names}; no Grad-CAM)"
        if loaded.temperature != 1.0:
            kind += f"; class head calibrated, temperature {loaded.temperature:.3f}"
        content = read_checkpoint(loaded.members[0])  # the members agree on input and classes
        hparams = dict(content.get("hyper_parameters") or {})
        data_hparams = content.get("datamodule_hyper_parameters")
    elif loaded.module is not None:
        kind = "Lightning checkpoint"
        hparams = dict(loaded.module.hparams)
        content = read_checkpoint(path)
        data_hparams = content.get("datamodule_hyper_parameters")
        epoch, step = content.get("epoch"), content.get("global_step")
        if epoch is not None:
            trained = f"{int(epoch) + 1} epochs, {int(step or 0)} optimizer steps"
    facts = ModelFacts(
        source=str(path),
        kind=kind,
        encoder=_encoder_text(loaded.model, hparams),
        image_size=loaded.preprocessing.image_size,
        keep_aspect=loaded.preprocessing.keep_aspect,
        mask_threshold=loaded.mask_threshold,
        class_names=tuple(loaded.class_names),
        training_data=_training_data(data_hparams),
        trained=trained,
        written=_file_written(path),
        parameters=sum(p.numel() for p in loaded.model.parameters()),
    )
    return AppModel(loaded.model, loaded.preprocessing, facts, device=device)
