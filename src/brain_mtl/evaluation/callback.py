"""A Lightning callback that writes the evaluation report at the end of ``trainer.test``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info

from brain_mtl.evaluation.report import evaluate, write_report


class EvaluationReport(Callback):
    """Write ``report.json``, ``report.md``, ``confusion_matrix.png`` and ``per_image.csv`` after testing.

    At the end of ``trainer.test`` (``python -m brain_mtl test``) the callback runs :func:`~brain_mtl.evaluation.
    evaluate` on the datamodule's ``evaluation_dataloader(split)`` (one more pass over the split, in eval mode),
    writes the files into the run's log directory (``trainer.log_dir``, or ``trainer.default_root_dir`` without a
    logger), prints where, and logs the headline numbers to TensorBoard as ``report/<name>`` (with the gate:
    ``report/gated/<name>``). Only the global-rank-0 process evaluates and writes.

    Args:
        split: split to evaluate (the datamodule must know it).
        mask_gate: also report the figures with masks emptied when the class head says no tumour.
        gate_min_area: the gate also empties predicted masks smaller than this many pixels (0: class veto only).
        false_mask_min_area: smallest predicted mask (pixels) on a no-tumour image that counts as a false mask;
            default: the module's ``false_mask_min_area`` hyperparameter, else 10.
        bootstrap: bootstrap resamples for the 95% intervals of the headline numbers (0: no intervals).
        seed: seed of the bootstrap.
        check_duplicates: list byte-identical images shared by the training images and the split.
        tta: test-time augmentation of the report's model pass: ``none`` (one pass), ``flip`` (the image and its
            horizontal mirror) or ``d4`` (the 8 flips, 90-degree rotations and transposes), as in
            ``predict-images --tta`` (the same implementation, :mod:`brain_mtl.inference.tta`). Recorded in
            ``report.json`` (``meta.tta``) and ``report.md``. The ``test`` loop's own metrics stay without TTA.
    """

    def __init__(
        self,
        split: str = "test",
        mask_gate: bool = True,
        gate_min_area: int = 0,
        false_mask_min_area: int | None = None,
        bootstrap: int = 1000,
        seed: int = 0,
        check_duplicates: bool = True,
        tta: Literal["none", "flip", "d4"] = "none",
    ) -> None:
        super().__init__()
        from brain_mtl.inference.tta import parse_tta

        self.tta = parse_tta(tta)
        self.split = split
        self.mask_gate = mask_gate
        self.gate_min_area = gate_min_area
        self.false_mask_min_area = false_mask_min_area
        self.bootstrap = bootstrap
        self.seed = seed
        self.check_duplicates = check_duplicates
        self.report: dict | None = None
        """The last report (rank 0 only), for inspection after ``trainer.test``."""
        self.paths: tuple[Path, Path] | None = None
        """(report.json, report.md) of the last report."""

    @staticmethod
    def output_dir(trainer: Trainer) -> Path:
        """Where the report goes: the logger's version folder, else the trainer's root folder."""
        log_dir = trainer.log_dir if trainer.loggers else None
        return Path(log_dir or trainer.default_root_dir)

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Evaluate, write the report files and log the headline numbers (rank 0 only)."""
        # Checked and resolved on every process: trainer.log_dir broadcasts (a collective), and an error raised on
        # rank 0 alone would leave the other processes waiting at the barrier below.
        datamodule = trainer.datamodule
        if datamodule is None or not hasattr(datamodule, "evaluation_dataloader"):
            raise RuntimeError(
                "EvaluationReport needs a datamodule with evaluation_dataloader(split); pass one to "
                "trainer.test(datamodule=...) or remove the callback"
            )
        out_dir = self.output_dir(trainer)
        if trainer.is_global_zero:
            report = evaluate(
                trainer.lightning_module,
                datamodule,
                self.split,
                mask_gate=self.mask_gate,
                gate_min_area=self.gate_min_area,
                false_mask_min_area=self.false_mask_min_area,
                bootstrap=self.bootstrap,
                seed=self.seed,
                check_duplicates=self.check_duplicates,
                tta=self.tta,
                meta={"ckpt_path": str(trainer.ckpt_path) if trainer.ckpt_path else None},
            )
            self.report = report
            self.paths = write_report(report, out_dir)
            rank_zero_info(f"Evaluation report written to {self.paths[1]} and {self.paths[0]}")
            self._log_scalars(trainer, report["headline"])
        trainer.strategy.barrier("evaluation_report")

    @staticmethod
    def _log_scalars(trainer: Trainer, headline: dict[str, float]) -> None:
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                for name, value in headline.items():
                    if value is not None and math.isfinite(value):
                        logger.experiment.add_scalar(f"report/{name}", value, global_step=trainer.global_step)
                logger.experiment.flush()
