"""Callbacks of a run: safe checkpoints, the TensorBoard pictures and the evaluation report.

They live apart from the task's steps, so a subclass of the task keeps them for free.
"""

from brain_mtl.callbacks.checkpoint import RunCheckpoint
from brain_mtl.callbacks.images import ConfusionMatrixImage, PredictionGrid
from brain_mtl.callbacks.report import EvaluationReport

__all__ = ["ConfusionMatrixImage", "EvaluationReport", "PredictionGrid", "RunCheckpoint"]
