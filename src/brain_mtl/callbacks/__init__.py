"""Lightning callbacks of a run, all in one package.

- :class:`RunCheckpoint` (``checkpoint``): checkpoints that never hold a diverged model, written atomically by
  :class:`AtomicCheckpointIO`.
- :class:`PredictionGrid`, :class:`ConfusionMatrixImage` (``images``): TensorBoard pictures.
- :class:`EvaluationReport` (``report``): the evaluation report of ``python -m brain_mtl test``, from the test
  steps' per-image statistics; :func:`evaluate` runs a test loop with it (a notebook's one call).
- :class:`PredictionWriter` (``prediction_writer``): the files of ``predict-images`` from
  ``python -m brain_mtl predict``.
- :class:`EncoderFreeze` (:mod:`brain_mtl.task.finetuning`, the task's own): a frozen pretrained encoder for the
  first epochs, re-exported here.
- :class:`RunTensorBoardLogger`, :func:`tensorboard_writer` (``tensorboard``): the run's logger, whose folder
  follows ``trainer.default_root_dir``, and how every callback finds its writer.

They live apart from the task's steps, so a subclass of the task keeps them for free.
"""

from brain_mtl.callbacks.checkpoint import AtomicCheckpointIO, RunCheckpoint
from brain_mtl.callbacks.images import ConfusionMatrixImage, PredictionGrid
from brain_mtl.callbacks.prediction_writer import PredictionWriter
from brain_mtl.callbacks.report import EvaluationReport, evaluate
from brain_mtl.callbacks.tensorboard import RunTensorBoardLogger, tensorboard_writer
from brain_mtl.task.finetuning import EncoderFreeze

__all__ = [
    "AtomicCheckpointIO",
    "ConfusionMatrixImage",
    "EncoderFreeze",
    "EvaluationReport",
    "PredictionGrid",
    "PredictionWriter",
    "RunCheckpoint",
    "RunTensorBoardLogger",
    "evaluate",
    "tensorboard_writer",
]
