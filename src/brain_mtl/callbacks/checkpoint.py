"""Checkpoints that never lose more than the work since the last save, and never keep a diverged model."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import fsspec.utils
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_warn

from brain_mtl.checkpoints import first_non_finite
from brain_mtl.errors import DivergenceError, divergence_error
from brain_mtl.files import RunLock, fsync_path

__all__ = ["AtomicCheckpointIO", "RunCheckpoint"]

DEFAULT_DIRNAME = "checkpoints"
"""With ``dirpath`` left out, the files go to ``<trainer.default_root_dir>/checkpoints``."""

PARTIAL_SUFFIX = ".part"
"""A checkpoint is written to ``<name>.part`` in its own folder first, then renamed over ``<name>``."""


def is_local_path(path: str | os.PathLike) -> bool:
    """Whether a checkpoint path is on this machine's file system (not ``s3://``, ``gs://``, ...)."""
    return fsspec.utils.get_protocol(str(path)) in ("file", "local")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's ``TorchCheckpointIO`` with atomic local writes: a killed writer never leaves a truncated file.

    Each file is written to ``<name>.part`` in its own folder, flushed to disk (fsync), then renamed over ``<name>``
    (and the folder flushed, so that the rename survives a power cut). Remote paths keep their store's own write
    semantics. :class:`RunCheckpoint` installs it on a trainer that uses the default plugin; pass it yourself with
    ``trainer.plugins: brain_mtl.callbacks.AtomicCheckpointIO``.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        """Write ``checkpoint`` to ``path`` atomically (see the class)."""
        if not is_local_path(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        target = os.fspath(path)
        partial = target + PARTIAL_SUFFIX
        super().save_checkpoint(checkpoint, partial, storage_options)
        fsync_path(partial)
        os.replace(partial, target)
        fsync_path(os.path.dirname(os.path.abspath(target)))


class RunCheckpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint``, made safe for long and unattended runs.

    Beside what ``ModelCheckpoint`` does (the ``save_top_k`` best files by ``monitor``), it guarantees:

    - ``last.ckpt`` is rewritten at every save point (each validation end and training-epoch end, and every
      ``every_n_train_steps`` steps or ``train_time_interval`` when set), whether or not the monitored score
      improved. Lightning 2.6 rewrites it only when a new best file is written, so ``--ckpt_path last`` could
      silently restart epochs back. Written through the public API (``Trainer.save_checkpoint``).
    - Every file is written atomically (:class:`AtomicCheckpointIO`, installed on the trainer at setup unless it
      has a checkpoint plugin of its own): a process killed at any moment leaves the previous file intact, never
      a truncated one. Leftover ``.part`` files of a killed run are removed when the next run starts.
    - One process at a time writes a checkpoint folder: a fit takes a lock on ``dirpath``
      (:class:`~brain_mtl.files.RunLock`, released when the process ends, however it ends), and a second fit started
      there stops with an error naming the first one's process.
    - Nothing non-finite is kept: when the weights (or buffers) or the monitored score hold NaN or infinity,
      nothing is written and training stops with a :class:`~brain_mtl.errors.DivergenceError` that names the
      step and the last good checkpoint.

    Args:
        dirpath: folder of the checkpoint files; None (the shipped configs): ``<trainer.default_root_dir>/checkpoints``,
            so that ``--trainer.default_root_dir`` moves them and ``--ckpt_path last`` finds them there.
        filename: file-name pattern of the best files, e.g. ``"epoch{epoch:02d}-dice{val/seg/dice:.3f}"``.
        monitor: logged metric that ranks the best files (``val/score``); None keeps the newest only.
        verbose: log each save decision.
        save_last: write ``last.ckpt`` at every save point.
        save_top_k: how many best files to keep (0: only ``last.ckpt``; -1: all).
        save_on_exception: also write a checkpoint when training raises.
        save_weights_only: leave the optimizer and loop states out (such files cannot resume a fit).
        mode: ``max`` or ``min``: whether a higher or a lower monitored value is better.
        auto_insert_metric_name: insert ``name=`` before each metric in the file name (false for names with
            ``/``).
        every_n_train_steps: also save every n optimizer steps (mid-epoch saves for long epochs).
        train_time_interval: also save after this much training time (e.g. ``"00:30:00"``).
        every_n_epochs: save the best files every n epochs (``last.ckpt`` still follows every save point).
        save_on_train_epoch_end: save at the end of the training epoch instead of after validation.
        enable_version_counter: name a new run's files ``-v1``, ``-v2``... instead of overwriting another run's.
    """

    def __init__(
        self,
        dirpath: str | Path | None = None,
        filename: str | None = None,
        monitor: str | None = None,
        verbose: bool = False,
        save_last: bool = True,
        save_top_k: int = 1,
        save_on_exception: bool = False,
        save_weights_only: bool = False,
        mode: str = "min",
        auto_insert_metric_name: bool = True,
        every_n_train_steps: int | None = None,
        train_time_interval: timedelta | None = None,
        every_n_epochs: int | None = None,
        save_on_train_epoch_end: bool | None = None,
        enable_version_counter: bool = True,
    ) -> None:
        if save_last not in (True, False):
            # "link" would point last.ckpt at an older best file: exactly the stale state this class avoids.
            raise ValueError(f"RunCheckpoint: save_last must be true or false, got {save_last!r}")
        super().__init__(
            dirpath=dirpath,
            filename=filename,
            monitor=monitor,
            verbose=verbose,
            save_last=False,  # written here, at every save point (Lightning's own only follows a new best file)
            save_top_k=save_top_k,
            save_on_exception=save_on_exception,
            save_weights_only=save_weights_only,
            mode=mode,
            auto_insert_metric_name=auto_insert_metric_name,
            every_n_train_steps=every_n_train_steps,
            train_time_interval=train_time_interval,
            every_n_epochs=every_n_epochs,
            save_on_train_epoch_end=save_on_train_epoch_end,
            enable_version_counter=enable_version_counter,
        )
        self.write_last = bool(save_last)
        self.save_on_train_epoch_end_setting = save_on_train_epoch_end
        self.last_every_n_train_steps = every_n_train_steps or 0
        self.last_time_interval = train_time_interval.total_seconds() if train_time_interval else None
        self.version_last = enable_version_counter
        self._last_written_at_step = -1
        self._last_written_time = time.monotonic()
        self._run_lock: RunLock | None = None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:  # noqa: D102
        if self.dirpath is None:  # the run's own folder, where --ckpt_path last looks (not the logger's version)
            self.dirpath = os.path.join(trainer.default_root_dir, DEFAULT_DIRNAME)
        super().setup(trainer, pl_module, stage)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        elif not isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO):
            rank_zero_warn(
                f"RunCheckpoint: the trainer's checkpoint plugin {type(trainer.strategy.checkpoint_io).__name__} "
                "writes the files; whether a killed write leaves a truncated file is up to it."
            )
        if trainer.is_global_zero and self.dirpath and is_local_path(self.dirpath):
            if stage == "fit":  # one writer per checkpoint folder: a second fit there stops here, naming the first
                self._run_lock = RunLock(self.dirpath)
                self._run_lock.acquire()
            for partial in Path(self.dirpath).glob(f"*{self.FILE_EXTENSION}{PARTIAL_SUFFIX}"):
                partial.unlink(missing_ok=True)  # left by a process killed while writing

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:  # noqa: D102
        super().teardown(trainer, pl_module, stage)
        self._release_lock()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:  # noqa: D102
        try:
            super().on_exception(trainer, pl_module, exception)
            if self.save_on_exception and not isinstance(exception, DivergenceError):
                self._write_last(trainer)
        finally:
            self._release_lock()

    def _release_lock(self) -> None:
        if self._run_lock is not None:
            self._run_lock.release()
            self._run_lock = None

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        """Refuse to write weights (or buffers) holding NaN or infinity: training stops, naming the last good file."""
        bad = first_non_finite(checkpoint.get("state_dict") or {})
        if bad is not None:
            raise divergence_error(trainer, f"the weights are not finite (NaN or infinity in {bad})")

    def _check_monitor(self, trainer: Trainer) -> None:
        current = trainer.callback_metrics.get(self.monitor) if self.monitor else None
        if current is not None and not bool(torch.isfinite(torch.as_tensor(current)).all()):
            raise divergence_error(trainer, f"the monitored score {self.monitor} is {float(current)}")

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any, **kwargs: Any) -> None:  # noqa: D102
        super().on_train_batch_end(trainer, pl_module, *args, **kwargs)
        step = trainer.global_step
        by_steps = self.last_every_n_train_steps and step % self.last_every_n_train_steps == 0
        by_time = self.last_time_interval is not None and (
            time.monotonic() - self._last_written_time >= self.last_time_interval
        )
        if by_steps or by_time:
            self._write_last(trainer)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:  # noqa: D102
        self._check_monitor(trainer)
        super().on_train_epoch_end(trainer, pl_module)
        self._write_last(trainer)  # every epoch, validated or not (once per step: not again after validation)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:  # noqa: D102
        if trainer.sanity_checking:
            return
        self._check_monitor(trainer)
        super().on_validation_end(trainer, pl_module)
        if not self._saves_on_train_epoch_end(trainer):
            self._write_last(trainer)

    def _saves_on_train_epoch_end(self, trainer: Trainer) -> bool:
        """Whether the save point of a validated epoch is its training-epoch end (after every callback's hook).

        ``ModelCheckpoint``'s documented rule for ``save_on_train_epoch_end=None``: validation once per epoch, at its
        end, is saved at the training-epoch end; mid-epoch or every-n-epochs validation at the validation end. So
        ``last.ckpt`` holds the state a resumed fit starts from, with every epoch-end hook applied.
        """
        if self.save_on_train_epoch_end_setting is not None:
            return self.save_on_train_epoch_end_setting
        if trainer.check_val_every_n_epoch != 1:
            return False
        if sum(trainer.num_val_batches) == 0:
            return True
        return trainer.val_check_interval == 1.0

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:  # noqa: D102
        super().on_train_end(trainer, pl_module)
        self._write_last(trainer)

    def _write_last(self, trainer: Trainer) -> None:
        """Write ``last.ckpt`` (once per training step), with Lightning's naming and version counter."""
        if (
            not self.write_last
            or trainer.fast_dev_run
            or trainer.state.fn != TrainerFn.FITTING
            or trainer.sanity_checking
            or self._last_written_at_step == trainer.global_step
        ):
            return
        metrics = {k: v for k, v in trainer.callback_metrics.items() if isinstance(v, torch.Tensor)}
        metrics.update(epoch=torch.tensor(trainer.current_epoch), step=torch.tensor(trainer.global_step))
        filepath = self.format_checkpoint_name(metrics, self.CHECKPOINT_NAME_LAST)
        if self.version_last:  # another run's last.ckpt in the folder is kept: this run writes last-v1.ckpt
            version = self.STARTING_VERSION
            while self.file_exists(filepath, trainer) and filepath != self.last_model_path:
                filepath = self.format_checkpoint_name(metrics, self.CHECKPOINT_NAME_LAST, ver=version)
                version += 1
        previous, self.last_model_path = self.last_model_path, filepath  # part of the state the file holds
        trainer.save_checkpoint(filepath, self.save_weights_only)
        self._last_written_at_step = trainer.global_step
        self._last_written_time = time.monotonic()
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.after_save_checkpoint(self)
        stale = previous and previous != filepath and previous not in self.best_k_models
        if stale and Path(previous).parent == Path(filepath).parent and previous != trainer.ckpt_path:
            trainer.strategy.remove_checkpoint(previous)  # this run's older last-vN file, never another run's
