"""Lightning callbacks of a run, all in one package.

- :class:`RunCheckpoint` (``checkpoint``): checkpoints that are written atomically and never hold a diverged model.
- :class:`PredictionGrid`, :class:`ConfusionMatrixImage` (``images``): TensorBoard pictures.
- :class:`EvaluationReport` (``report``): the evaluation report of ``python -m brain_mtl test``, from the test
  steps' per-image statistics.
- :class:`PredictionWriter` (``prediction_writer``): the files of ``predict-images`` from
  ``python -m brain_mtl predict``.
- :class:`EncoderFreeze` (``finetuning``): a frozen pretrained encoder for the first epochs.
- :class:`RunTensorBoardLogger`, :func:`tensorboard_writer` (``tensorboard``): the run's logger, whose folder
  follows ``trainer.default_root_dir``, and how every callback finds its writer.

They live apart from the task's steps, so a subclass of the task keeps them for free.
"""

from brain_mtl.callbacks.checkpoint import RunCheckpoint
from brain_mtl.callbacks.finetuning import EncoderFreeze
from brain_mtl.callbacks.images import ConfusionMatrixImage, PredictionGrid
from brain_mtl.callbacks.prediction_writer import PredictionWriter
from brain_mtl.callbacks.report import EvaluationReport
from brain_mtl.callbacks.tensorboard import RunTensorBoardLogger, tensorboard_writer

__all__ = [
    "ConfusionMatrixImage",
    "EncoderFreeze",
    "EvaluationReport",
    "PredictionGrid",
    "PredictionWriter",
    "RunCheckpoint",
    "RunTensorBoardLogger",
    "tensorboard_writer",
]
