"""Checkpoints that never lose more than the work since the last save, and never keep a diverged model."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import torch
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

from brain_mtl.errors import divergence_error
from brain_mtl.files import RunLock
from brain_mtl.inference.checkpoint import first_non_finite

__all__ = ["RunCheckpoint"]

DEFAULT_DIRNAME = "checkpoints"
"""With ``dirpath`` left out, the files go to ``<trainer.default_root_dir>/checkpoints``."""

PARTIAL_SUFFIX = ".part"
"""A checkpoint is written to ``<name>.part`` in its own folder first, then renamed over ``<name>``."""


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class RunCheckpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint``, made safe for long and unattended runs.

    Beside what ``ModelCheckpoint`` does (the ``save_top_k`` best files by ``monitor``), it guarantees:

    - ``last.ckpt`` is rewritten at every save point (each validation end, and every ``every_n_train_steps`` steps
      or ``train_time_interval`` when set), whether or not the monitored score improved. Lightning 2.6 rewrites it
      only when a new best file is written, so ``--ckpt_path last`` could silently restart epochs back.
    - Every file is written atomically: to ``<name>.part`` in the same folder, flushed to disk (fsync), then
      renamed over ``<name>``. A process killed at any moment leaves the previous file intact, never a truncated
      one. Leftover ``.part`` files of a killed run are removed when the next run starts.
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
            save_last=save_last,
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
        self._last_written_at_step = -1
        self._run_lock: RunLock | None = None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:  # noqa: D102
        if self.dirpath is None:  # the run's own folder, where --ckpt_path last looks (not the logger's version)
            self.dirpath = os.path.join(trainer.default_root_dir, DEFAULT_DIRNAME)
        super().setup(trainer, pl_module, stage)
        if trainer.is_global_zero and self.dirpath and _is_local_file_protocol(self.dirpath):
            if stage == "fit":  # one writer per checkpoint folder: a second fit there stops here, naming the first
                self._run_lock = RunLock(self.dirpath)
                self._run_lock.acquire()
            for partial in Path(self.dirpath).glob(f"*{self.FILE_EXTENSION}{PARTIAL_SUFFIX}"):
                partial.unlink(missing_ok=True)  # left by a process killed while writing

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:  # noqa: D102
        super().teardown(trainer, pl_module, stage)
        self._release_lock()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:  # noqa: D102
        super().on_exception(trainer, pl_module, exception)
        self._release_lock()

    def _release_lock(self) -> None:
        if self._run_lock is not None:
            self._run_lock.release()
            self._run_lock = None

    def _save_topk_checkpoint(self, trainer: Trainer, monitor_candidates: dict[str, torch.Tensor]) -> None:
        current = monitor_candidates.get(self.monitor) if self.monitor else None
        if current is not None and not bool(torch.isfinite(torch.as_tensor(current)).all()):
            raise divergence_error(trainer, f"the monitored score {self.monitor} is {float(current)}")
        super()._save_topk_checkpoint(trainer, monitor_candidates)
        # Every save point writes last.ckpt, improved or not (Lightning writes it only with a new best file).
        self._save_last_checkpoint(trainer, monitor_candidates)

    def _save_last_checkpoint(self, trainer: Trainer, monitor_candidates: dict[str, torch.Tensor]) -> None:
        if self._last_written_at_step == trainer.global_step and self.last_model_path:
            return  # already written at this step by the save point above
        super()._save_last_checkpoint(trainer, monitor_candidates)
        if self.save_last:
            self._last_written_at_step = trainer.global_step

    def _save_checkpoint(self, trainer: Trainer, filepath: str) -> None:
        bad = first_non_finite(trainer.lightning_module.state_dict())
        if bad is not None:
            raise divergence_error(trainer, f"the weights are not finite (NaN or infinity in {bad})")
        if not _is_local_file_protocol(filepath):
            super()._save_checkpoint(trainer, filepath)  # remote stores have their own write semantics
            return
        partial = filepath + PARTIAL_SUFFIX
        trainer.save_checkpoint(partial, self.save_weights_only)
        if trainer.is_global_zero and os.path.isfile(partial):
            _fsync(partial)
            os.replace(partial, filepath)
            _fsync(os.path.dirname(os.path.abspath(filepath)))  # the rename itself survives a power cut
        trainer.strategy.barrier("RunCheckpoint._save_checkpoint")
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.after_save_checkpoint(self)
