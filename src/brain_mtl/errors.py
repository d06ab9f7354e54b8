"""Errors that the command line prints as one clear message instead of a traceback.

Each message names the file or the step concerned and says what to do; :func:`brain_mtl.commands.main.main` prints
it after ``error:`` and exits with status 1 (2 for :class:`ConfigError` and :class:`OutputFolderError`, usage errors).
Every error type of the library lives here, so that the command line catches them without importing the code that
raises them.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lightning.pytorch import Trainer


class DatasetError(ValueError):
    """A dataset folder or file is unusable.

    The message lists every problem found, one per line, each naming the file and saying how to fix it, so
    that a user can repair a whole folder in one pass instead of one error per run.
    """


class OutputFolderError(FileExistsError):
    """An output folder cannot take a prediction run's files: it is a file, or it holds files and overwrite is off.

    ``predict-images`` reports it as a usage error (exit status 2); ``python -m brain_mtl predict`` with the
    :class:`~brain_mtl.callbacks.PredictionWriter` prints it after ``error:`` (exit status 1).
    """


class CheckpointError(ValueError):
    """A checkpoint file cannot be used.

    It is missing, empty, incomplete, unsafe to unpickle, or holds non-finite weights.
    """


class ConfigError(ValueError):
    """A configuration value that cannot work: one ``error:`` line naming the key, exit status 2.

    Out of range, not fitting another value, or a checkpoint's saved setting of the wrong type.
    """


class WriteError(OSError):
    """A file the command was asked to write cannot be written; the message names it.

    A read-only folder, a file where a folder should be, a full disk: no half-written file is left in its place.
    """


class RunLockedError(WriteError):
    """Another process is writing into the same run folder (its checkpoints); the message names that process."""


class DivergenceError(RuntimeError):
    """Training produced a non-finite loss, weights or monitored score; nothing non-finite was saved."""


def last_good_checkpoint(trainer: Trainer) -> str | None:
    """The newest checkpoint file that the trainer's checkpoint callbacks wrote and that still exists."""
    paths = {
        path
        for callback in trainer.checkpoint_callbacks
        for path in (callback.last_model_path, callback.best_model_path)
        if path and os.path.isfile(path)
    }
    return max(paths, key=os.path.getmtime) if paths else None


def divergence_error(trainer: Trainer, what: str) -> DivergenceError:
    """A :class:`DivergenceError` that names the step and the last good checkpoint and says what to try.

    Args:
        trainer: the running trainer (for the step and its checkpoint callbacks).
        what: what is not finite, e.g. ``"the training loss is nan"``.
    """
    return diverged(what, trainer.current_epoch, trainer.global_step, last_good_checkpoint(trainer))


def diverged(what: str, epoch: int, step: int, good: str | None) -> DivergenceError:
    """The :class:`DivergenceError` of :func:`divergence_error`, from the place and the last good checkpoint."""
    where = f"epoch {epoch}, global step {step}"
    resume = (
        f"The last good checkpoint is {good}: resume from it with --ckpt_path {good}"
        if good
        else "No checkpoint was written before it"
    )
    return DivergenceError(
        f"training diverged: {what} at {where}; nothing from this point on was saved. {resume}. "
        "Lower the learning rate (model.lr), clip gradients (trainer.gradient_clip_val: 1.0), or train in "
        "32-true or bf16-mixed precision instead of 16-mixed."
    )
