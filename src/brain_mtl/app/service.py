"""What the web app does, without the web framework: predict a scan, draw, tabulate.

The model (:mod:`brain_mtl.app.model`) and the inputs (:mod:`brain_mtl.app.uploads`) are re-exported here for the page.

Everything here is plain Python on top of :mod:`brain_mtl.inference` (the page in :mod:`brain_mtl.app.page` only
lays it out), so it is tested without a browser. Prediction itself is :class:`~brain_mtl.inference.Predictor`'s:
this module reads the uploaded bytes, hands the image to a predictor built with the page's settings around the one
cached network, and draws and tabulates the :class:`~brain_mtl.inference.Prediction` it returns. The per-scan
files (mask PNG, Grad-CAM PNG) and the tables (``predictions.csv`` / ``.json``) are the ones ``predict-images``
writes, by the same :class:`~brain_mtl.inference.OutputWriter`.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from brain_mtl.app.launch import DEFAULT_CKPT, NO_CHECKPOINT
from brain_mtl.app.model import AppModel, ModelFacts, Settings, gradcam_available, load_app_model
from brain_mtl.app.uploads import EXAMPLES, MAX_PIXELS, UPLOAD_TYPES, ScanInput, UploadError, example_scan, read_upload
from brain_mtl.inference import OutputWriter, Prediction
from brain_mtl.viz import blend_mask, draw_outline, write_png

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


RESEARCH_NOTICE = (
    "Research tool, not a diagnostic device: the masks and classes come from a model trained for research, have not "
    "been validated for clinical use, and must not guide the diagnosis or care of a patient."
)


DISPLAY_SIDE = 1024
"""Images are shown at most this many pixels wide or high (downloads keep the original size)."""

RED = (255, 40, 40)
GREEN = (0, 220, 0)


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
