"""The one way a callback finds the run's TensorBoard writer."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lightning.pytorch import Trainer
from lightning.pytorch.loggers import TensorBoardLogger

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

__all__ = ["tensorboard_writer"]


def tensorboard_writer(trainer: Trainer) -> SummaryWriter | None:
    """The ``SummaryWriter`` of the trainer's first TensorBoard logger.

    Every callback that draws into TensorBoard asks here, so a run with several loggers (TensorBoard beside CSV,
    say) or none behaves the same for all of them.

    Args:
        trainer: the running trainer.

    Returns:
        The writer (``TensorBoardLogger.experiment``), or None when no TensorBoard logger is attached; callbacks
        then skip their pictures.
    """
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None
