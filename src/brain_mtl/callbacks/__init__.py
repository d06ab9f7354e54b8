"""Callbacks of a run: safe checkpoints and the TensorBoard pictures.

They live apart from the task's steps, so a subclass of the task keeps them for free.
"""

from brain_mtl.callbacks.checkpoint import RunCheckpoint
from brain_mtl.callbacks.images import ConfusionMatrixImage, PredictionGrid

__all__ = ["ConfusionMatrixImage", "PredictionGrid", "RunCheckpoint"]
