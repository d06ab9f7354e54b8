"""The run's TensorBoard logger, and the one way a callback finds its writer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lightning.pytorch import Trainer
from lightning.pytorch.loggers import TensorBoardLogger

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

__all__ = ["RunTensorBoardLogger", "tensorboard_writer"]


class RunTensorBoardLogger(TensorBoardLogger):
    """Lightning's ``TensorBoardLogger`` whose folder follows the run: ``save_dir: null`` is the trainer's root.

    The shipped configs use it with ``save_dir`` left out, so ``--trainer.default_root_dir DIR`` moves the logs (to
    ``DIR/<name>/version_N``) together with the checkpoints (``RunCheckpoint`` with ``dirpath`` left out:
    ``DIR/checkpoints``). The command line fills ``save_dir`` in from ``trainer.default_root_dir`` before the logger
    is built; in Python, None means the current folder, like the trainer's own default root.

    Args:
        save_dir: the logs' root folder (None: the run's ``trainer.default_root_dir``).
        name: sub-folder of the run's logs (``tensorboard`` in the shipped configs).
        version: version folder (None: the next free ``version_N``).
        default_hp_metric: log Lightning's placeholder ``hp_metric`` (off in the shipped configs).
        **kwargs: the other ``TensorBoardLogger`` arguments.
    """

    def __init__(
        self,
        save_dir: str | None = None,
        name: str | None = "tensorboard",
        version: int | str | None = None,
        default_hp_metric: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            save_dir=save_dir if save_dir is not None else ".",
            name=name,
            version=version,
            default_hp_metric=default_hp_metric,
            **kwargs,
        )


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
