"""Prediction on image files: masks at the original size, classes, overlays, Grad-CAM, export.

Three ways in:

- Python: ``Predictor.from_checkpoint("last.ckpt").predict("scan.jpg")`` returns a :class:`Prediction` (mask at
  the image's own size, class name, class probabilities); :meth:`Predictor.predict_batch` and
  :meth:`Predictor.iter_predict` run many files in batches.
- ``python -m brain_mtl predict-images --ckpt_path P --input DIR_OR_FILES --output OUT [--gradcam] [--tta d4]``
  (:mod:`brain_mtl.commands.predict_images`) writes ``<stem>_mask.png``, ``<stem>_overlay.png`` (and
  ``<stem>_gradcam.png``) per image, plus ``predictions.csv`` and ``predictions.json`` (one row per image;
  unreadable files listed under ``failed``).
- ``python -m brain_mtl predict ... --trainer.callbacks+=brain_mtl.callbacks.PredictionWriter
  --trainer.callbacks.output_dir OUT``: LightningCLI's loop, writing the same files through
  :class:`brain_mtl.callbacks.PredictionWriter`.

Images are preprocessed exactly as in evaluation (the data package's ``test`` transform: resize, or letterbox
when the model was trained with ``keep_aspect``, then ImageNet normalisation), with the settings stored in the
checkpoint. Network outputs are mapped back to the original pixels: the letterbox padding is cut off before
resizing, so a mask lands where the tumour is on non-square images too.

Layout: ``preprocessing`` (transform and geometry), ``checkpoint`` (loading), ``tta`` (test-time augmentation:
the views, their inverses, the averaging; also used by the evaluation report), ``predictor`` (the API),
``inputs`` (which files a list of files and folders stands for), ``outputs`` (files), ``gradcam`` (Grad-CAM),
``export`` (ONNX and state-dict files).
"""

from __future__ import annotations

from typing import Any

from brain_mtl import moved_attribute
from brain_mtl.inference.checkpoint import LoadedCheckpoint, load_checkpoint
from brain_mtl.inference.inputs import collect_inputs
from brain_mtl.inference.outputs import OutputWriter
from brain_mtl.inference.prediction import Failure, NonFiniteOutputError, Prediction, build_prediction
from brain_mtl.inference.predictor import Predictor
from brain_mtl.inference.preprocessing import Preprocessing
from brain_mtl.models.tta import TTA_MODES, tta_probs

__all__ = [
    "TTA_MODES",
    "Failure",
    "LoadedCheckpoint",
    "NonFiniteOutputError",
    "OutputWriter",
    "Prediction",
    "Predictor",
    "Preprocessing",
    "build_prediction",
    "collect_inputs",
    "load_checkpoint",
    "tta_probs",
]


_MOVED = {
    "PredictionWriter": "brain_mtl.callbacks:PredictionWriter",
    "predict_images_main": "brain_mtl.commands.predict_images:predict_images_main",
}
"""Names that lived here before; they still resolve (with a DeprecationWarning) for existing configs and scripts."""


def __getattr__(name: str) -> Any:
    return moved_attribute(__name__, name, _MOVED)
