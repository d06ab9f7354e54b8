"""What the web app does, without the web framework: load a model once, read uploads, predict, draw, tabulate.

Everything here is plain Python on top of :mod:`brain_mtl.inference` (the page in :mod:`brain_mtl.app.page` only
lays it out), so it is tested without a browser. Prediction itself is :class:`~brain_mtl.inference.Predictor`'s:
this module reads the uploaded bytes, hands the image to a predictor built with the page's settings around the one
cached network, and draws and tabulates the :class:`~brain_mtl.inference.Prediction` it returns. The per-scan
files (mask PNG, Grad-CAM PNG) and the tables (``predictions.csv`` / ``.json``) are the ones ``predict-images``
writes, by the same :class:`~brain_mtl.inference.OutputWriter`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import io
import os
import tempfile
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from brain_mtl.inference import OutputWriter, Prediction, Predictor, Preprocessing, load_checkpoint

__all__ = [
    "DEFAULT_CKPT",
    "EXAMPLES",
    "MAX_PIXELS",
    "NO_CHECKPOINT",
    "RESEARCH_NOTICE",
    "UPLOAD_TYPES",
    "AppModel",
    "ModelFacts",
    "Pictures",
    "ScanInput",
    "ScanResult",
    "Settings",
    "UploadError",
    "example_scan",
    "export_files",
    "gradcam_available",
    "load_app_model",
    "overlay_image",
    "pictures",
    "read_upload",
]

DEFAULT_CKPT = Path("runs/quickstart/checkpoints/last.ckpt")
"""The checkpoint the quickstart writes (relative to the folder the app is started in), used without --ckpt_path."""

NO_CHECKPOINT = (
    "No model to load: train one with `python -m brain_mtl fit --config configs/quickstart.yaml` (it writes "
    f"`{DEFAULT_CKPT.as_posix()}`, which the app then finds), or start the app with `--ckpt_path PATH` "
    "(a `.ckpt` checkpoint or an ONNX file from `python -m brain_mtl export`)."
)
"""The one sentence the page shows when it has no checkpoint."""

RESEARCH_NOTICE = (
    "Research tool, not a diagnostic device: the masks and classes come from a model trained for research, have not "
    "been validated for clinical use, and must not guide the diagnosis or care of a patient."
)

UPLOAD_TYPES = ("png", "jpg", "jpeg", "bmp", "tif", "tiff", "webp")
"""File extensions the uploader offers."""

MAX_PIXELS = 25_000_000
"""Largest upload the app predicts, in pixels (5000 x 5000); larger scans get a message, not a memory spike.
MRI slices are far smaller (BRISC: 512 x 512); ``predict-images`` takes bigger files."""

DISPLAY_SIDE = 1024
"""Images are shown at most this many pixels wide or high (downloads keep the original size)."""

RED = (255, 40, 40)
GREEN = (0, 220, 0)


class UploadError(ValueError):
    """An uploaded file cannot be predicted; the message names the file and says what to do."""


# ---------------------------------------------------------------------------------------------- model and facts
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
    """Whether a network can be explained with Grad-CAM (a PyTorch network with weights)."""
    return any(True for _ in model.parameters())


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
    inner = getattr(model, "model", model)
    encoder = str(hparams.get("encoder") or getattr(inner, "encoder_name", "reference"))
    if encoder != "reference":
        weights = hparams.get("encoder_weights")
        return f"timm `{encoder}`" + (f" (initialised from {weights})" if weights else "")
    base, depth = hparams.get("base_channels", getattr(inner, "base_channels", None)), hparams.get("depth")
    depth = depth if depth is not None else getattr(inner, "depth", None)
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
        from brain_mtl.app.onnx_model import load_onnx

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
    if loaded.module is not None:
        from brain_mtl.inference.checkpoint import read_checkpoint

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


# ---------------------------------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class ScanInput:
    """One scan to predict: an upload (``data`` holds its bytes) or a bundled example (``image`` and ``truth``).

    Attributes:
        name: the file name shown and used for the downloads.
        digest: a content hash, the cache key of its prediction.
        data: the uploaded bytes (None for examples).
        image: the decoded ``(H, W, 3)`` uint8 RGB image (examples), else None.
        truth: the true tumour mask ``(H, W)`` (synthetic examples), else None.
    """

    name: str
    digest: str
    data: bytes | None = None
    image: np.ndarray | None = None
    truth: np.ndarray | None = None

    @classmethod
    def upload(cls, name: str, data: bytes) -> ScanInput:
        """An uploaded file."""
        return cls(name=name, digest=hashlib.sha256(data).hexdigest(), data=data)

    def read(self, max_pixels: int = MAX_PIXELS) -> np.ndarray:
        """The scan as ``(H, W, 3)`` uint8 RGB.

        Raises:
            UploadError: the upload is empty, not an image, truncated, corrupt or too large.
        """
        if self.image is not None:
            return self.image
        return read_upload(self.name, self.data or b"", max_pixels)


def _too_large(name: str, width: int, height: int, max_pixels: int) -> UploadError:
    return UploadError(
        f"{name}: {width} x {height} pixels is larger than the app takes ({max_pixels / 1e6:g} megapixels): "
        "downscale it, or predict it with `python -m brain_mtl predict-images`."
    )


def _check_declared_size(name: str, data: bytes, max_pixels: int) -> None:
    """Refuse an image whose header declares more than ``max_pixels``, without decoding its pixels.

    Pillow reads the header (it comes with Streamlit); a format it does not know is checked after decoding.
    """
    try:
        from PIL import Image
    except ImportError:
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = int(image.size[0]), int(image.size[1])
    except Image.DecompressionBombError as error:  # Pillow itself refuses to open it: far beyond the limit here
        raise UploadError(
            f"{name}: its header declares an image larger than the app takes ({max_pixels / 1e6:g} megapixels; "
            f"{error}): downscale it, or predict it with `python -m brain_mtl predict-images`."
        ) from error
    except Exception:  # not an image Pillow knows, or a header it refuses: OpenCV's decoder will say what is wrong
        return
    if width * height > max_pixels:
        raise _too_large(name, width, height, max_pixels)


def read_upload(name: str, data: bytes, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode an uploaded file into ``(H, W, 3)`` uint8 RGB, as ``predict-images`` reads files.

    Gray, RGB, RGBA, 16-bit: the data package's reader (:mod:`brain_mtl.data.io`) converts them. The size is checked
    from the header before the pixels are decoded, so a huge image never fills the memory.

    Args:
        name: the file's name (in messages).
        data: its bytes.
        max_pixels: the largest accepted width x height.

    Raises:
        UploadError: empty, not an image, truncated, corrupt, or larger than ``max_pixels``; the message names the
            file and says what to do.
    """
    from brain_mtl.data.errors import DatasetError
    from brain_mtl.data.io import FORMAT_NAMES, decode_unchanged, is_truncated, sniff_format, to_rgb_uint8

    if not data:
        raise UploadError(f"{name}: the file is empty (0 bytes): upload the scan again.")
    _check_declared_size(name, data, max_pixels)
    fmt = sniff_format(data)  # from the content: a file that is no image at all is reported by the decoder below
    if fmt is not None and is_truncated(data):
        raise UploadError(
            f"{name}: truncated: the {FORMAT_NAMES[fmt]} data ends before its end marker (an interrupted download "
            "or copy): upload the complete file."
        )
    try:
        raw = decode_unchanged(data, name)
    except DatasetError as error:
        raise UploadError(str(error)) from error
    if raw.shape[0] * raw.shape[1] > max_pixels:
        raise _too_large(name, raw.shape[1], raw.shape[0], max_pixels)
    return to_rgb_uint8(raw)


EXAMPLES: dict[str, tuple[int, int]] = {
    "example_glioma.png": (0, 11),
    "example_meningioma.png": (1, 12),
    "example_pituitary.png": (2, 13),
    "example_no_tumor.png": (3, 14),
}
"""Bundled example scans: name -> (class index, seed) of a synthetic slice drawn by :func:`synthesize_slice`."""


def example_scan(name: str, size: int = 384) -> ScanInput:
    """A bundled example: a synthetic axial slice (not a real scan) with its true tumour mask."""
    from brain_mtl.data import synthesize_slice

    label, seed = EXAMPLES[name]
    gray, truth = synthesize_slice(np.random.default_rng(seed), label, "ax", size, size)
    image = np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    return ScanInput(name=name, digest=f"example:{name}:{seed}:{size}", image=image, truth=truth.astype(np.uint8))


# --------------------------------------------------------------------------------------------------- results
@dataclass
class ScanResult:
    """A predicted scan.

    Attributes:
        scan: the input.
        prediction: the predictor's answer (mask at the scan's size, class, probabilities, Grad-CAM map).
        seconds: time to read and predict it.
    """

    scan: ScanInput
    prediction: Prediction
    seconds: float

    @property
    def area_px(self) -> int:
        """Predicted tumour pixels."""
        return self.prediction.mask_area

    @property
    def area_share(self) -> float:
        """Predicted tumour pixels as a share of the slice."""
        height, width = self.prediction.size
        return self.area_px / max(1, height * width)


def predict_scan(model: AppModel, scan: ScanInput, settings: Settings) -> ScanResult:
    """Read and predict one scan.

    Raises:
        UploadError: the file cannot be read.
        ValueError: the network's outputs are not finite (:class:`~brain_mtl.inference.NonFiniteOutputError`).
    """
    start = time.perf_counter()
    image = scan.read()
    prediction = model.predict(scan.name, image, settings)
    return ScanResult(scan, prediction, time.perf_counter() - start)


def overlay_image(result: ScanResult, opacity: float = 0.4) -> np.ndarray:
    """The scan with the predicted mask filled (``opacity``) and outlined in red; a true mask outlined in green.

    Returns:
        ``(H, W, 3)`` uint8 RGB at the scan's size.
    """
    from brain_mtl.viz import blend_mask, draw_outline

    prediction = result.prediction
    thickness = max(1, round(max(prediction.size) / 256))
    out = blend_mask(prediction.image, prediction.mask, RED, alpha=float(opacity))
    out = draw_outline(out, prediction.mask, RED, thickness)
    if result.scan.truth is not None:
        out = draw_outline(out, result.scan.truth, GREEN, thickness)
    return out


def display_copy(image: np.ndarray, side: int = DISPLAY_SIDE) -> np.ndarray:
    """A copy no larger than ``side`` pixels on its longer side, for showing in the page."""
    import cv2

    height, width = image.shape[:2]
    scale = side / max(height, width)
    if scale >= 1:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


@dataclass(frozen=True)
class Pictures:
    """A result's pictures as PNG bytes (what the page shows and offers; the browser gets them unchanged).

    Attributes:
        scan: the scan, at most :data:`DISPLAY_SIDE` pixels on its longer side.
        overlay: the overlay at the same display size.
        overlay_full: the overlay at the scan's own size (the download).
    """

    scan: bytes
    overlay: bytes
    overlay_full: bytes


def pictures(result: ScanResult, opacity: float) -> Pictures:
    """Encode the scan and its overlay (:func:`overlay_image`) for the page."""
    image = result.prediction.image
    overlay = overlay_image(result, opacity)
    overlay_full = png_bytes(overlay)
    if max(image.shape[:2]) <= DISPLAY_SIDE:
        return Pictures(png_bytes(image), overlay_full, overlay_full)
    return Pictures(png_bytes(display_copy(image)), png_bytes(display_copy(overlay)), overlay_full)


def png_bytes(image: np.ndarray) -> bytes:
    """A uint8 picture as PNG bytes, written by the library's one PNG writer (:func:`brain_mtl.viz.write_png`)."""
    from brain_mtl.viz import write_png

    with tempfile.TemporaryDirectory(prefix="brain_mtl_app_") as folder:
        return write_png(Path(folder) / "image.png", image).read_bytes()


@dataclass
class ExportFiles:
    """The files ``predict-images`` would write for the shown scans, in memory.

    Attributes:
        stems: per result, the stem of its files (unique, as ``predict-images`` names them).
        masks: per result, ``<stem>_mask.png`` (0/255 at the scan's size).
        gradcams: per result, ``<stem>_gradcam.png`` or None.
        csv: ``predictions.csv``.
        json: ``predictions.json`` (rows, failed inputs, settings).
    """

    stems: list[str]
    masks: list[bytes]
    gradcams: list[bytes | None]
    csv: bytes
    json: bytes


def export_files(
    results: Sequence[ScanResult],
    failures: Sequence[tuple[str, str]],
    class_names: Sequence[str],
    settings: dict[str, Any],
) -> ExportFiles:
    """Write the results with :class:`~brain_mtl.inference.OutputWriter` into a temporary folder and read them back.

    Args:
        results: the predicted scans, in page order.
        failures: ``(file name, reason)`` of the scans that could not be predicted.
        class_names: the model's classes.
        settings: recorded under ``settings`` in ``predictions.json``.
    """
    stems: list[str] = []
    masks: list[bytes] = []
    gradcams: list[bytes | None] = []
    with tempfile.TemporaryDirectory(prefix="brain_mtl_app_") as folder:
        out = Path(folder)
        with OutputWriter(out, class_names, overlays=False, settings=settings) as writer:
            for result in results:
                row = writer.write(result.prediction)
                stems.append(row["stem"])
            for name, reason in failures:
                writer.fail(name, reason)
        for stem in stems:
            masks.append((out / f"{stem}_mask.png").read_bytes())
            gradcam = out / f"{stem}_gradcam.png"
            gradcams.append(gradcam.read_bytes() if gradcam.is_file() else None)
        return ExportFiles(stems, masks, gradcams, writer.csv_path.read_bytes(), writer.json_path.read_bytes())
