"""A Lightning prediction writer for ``python -m brain_mtl predict``: the same files as ``predict-images``."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from brain_mtl.checkpoints import class_names_for
from brain_mtl.data import BrainTumorDataModule
from brain_mtl.data.io import read_image
from brain_mtl.inference.outputs import OutputWriter, check_output_dir, clear_previous_run
from brain_mtl.inference.prediction import NonFiniteOutputError, build_prediction
from brain_mtl.inference.preprocessing import Preprocessing
from brain_mtl.task.module import BrainTumorModule

__all__ = ["PredictionWriter"]

OVERWRITE_OPTION = "overwrite=True (on the command line: --trainer.callbacks.overwrite true)"
"""How a user turns on :class:`PredictionWriter`'s ``overwrite``, as its refusal names it."""


class PredictionWriter(BasePredictionWriter):
    """Lightning callback for ``python -m brain_mtl predict``: writes what ``predict-images`` writes.

    It reads ``predict_step``'s dicts (``mask_probs (B, 1, h, w)``, ``class_probs (B, C)``, ``path``,
    ``orig_size``), re-reads each original image for the overlay, cuts off letterbox padding, resizes the mask to
    the original size and writes ``<stem>_mask.png``, ``<stem>_overlay.png`` and ``predictions.csv/.json`` in
    ``output_dir``. The image size and letterboxing come from the :class:`~brain_mtl.BrainTumorDataModule`
    (``image_size``, ``keep_aspect``), the threshold and the classes from the
    :class:`~brain_mtl.BrainTumorModule` (``hparams.mask_threshold``, ``hparams.num_classes``).
    An image that cannot be re-read, or whose probabilities are not finite (NaN or infinity: a broken or
    overflowing network), gets no files: it is listed under ``failed`` in the JSON file, and a warning at the
    end of prediction counts such images. The tables never hold ``NaN``.

    Like ``predict-images``, it refuses an ``output_dir`` that already holds files unless ``overwrite`` is on;
    then the files of the previous run (as its ``predictions.json`` lists them) are removed first and other files
    are left.

    Args:
        output_dir: folder for the files (created; must be new or empty, see ``overwrite``).
        overlays: write overlay images.
        mask_threshold: probability threshold; default the module's ``mask_threshold``.
        mask_gate: empty the mask when the most probable class is ``no_tumor``.
        overwrite: write into an ``output_dir`` that already holds files, replacing a previous run's results.
    """

    def __init__(
        self,
        output_dir: str = "predictions",
        overlays: bool = True,
        mask_threshold: float | None = None,
        mask_gate: bool = False,
        overwrite: bool = False,
    ) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = output_dir
        self.overlays = overlays
        self.mask_threshold = mask_threshold
        self.mask_gate = mask_gate
        self.overwrite = overwrite
        self.writer: OutputWriter | None = None
        self._preprocessing = Preprocessing()
        self._threshold = 0.5
        self._class_names: tuple[str, ...] = class_names_for(4)

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Check the output folder, read the settings from the datamodule and the module, open the output files.

        Raises:
            TypeError: the trainer's datamodule is not a :class:`~brain_mtl.BrainTumorDataModule`, or the module
                is not a :class:`~brain_mtl.BrainTumorModule` (or a subclass).
            brain_mtl.inference.outputs.OutputFolderError: ``output_dir`` holds files and ``overwrite`` is off,
                or it is a file.
        """
        datamodule = _brain_tumor_datamodule(trainer.datamodule)
        module = _brain_tumor_module(pl_module)
        prefix = "predictions" if trainer.world_size == 1 else f"predictions_rank{trainer.global_rank}"
        # Every process checks before any writes, so no process mistakes another's new files for old ones.
        check_output_dir(self.output_dir, self.overwrite, option=OVERWRITE_OPTION)
        if trainer.world_size > 1:
            trainer.strategy.barrier("PredictionWriter.check_output_dir")
        if self.overwrite:
            removed, others = clear_previous_run(self.output_dir, prefix)
            if removed:
                rank_zero_info(f"PredictionWriter: removed {removed} files of the previous run in {self.output_dir}")
            if others:
                rank_zero_info(
                    f"PredictionWriter: {self.output_dir} holds {others} other files or folders, not listed by a "
                    "previous run; they are left as they are (same-named results of this run replace them)"
                )
        self._preprocessing = Preprocessing(image_size=int(datamodule.image_size), keep_aspect=datamodule.keep_aspect)
        _warn_if_trained_differently(trainer.ckpt_path, self._preprocessing)
        hparams = module.hparams
        self._threshold = float(self.mask_threshold if self.mask_threshold is not None else hparams.mask_threshold)
        self._class_names = class_names_for(int(hparams.num_classes))
        self.writer = OutputWriter(
            self.output_dir,
            self._class_names,
            overlays=self.overlays,
            file_prefix=prefix,
            settings={
                "mask_threshold": self._threshold,
                "image_size": self._preprocessing.image_size,
                "keep_aspect": self._preprocessing.keep_aspect,
                "mask_gate": self.mask_gate,
            },
        )

    def write_on_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        prediction: dict[str, Any],
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Write the files of one batch."""
        if self.writer is None:
            self.on_predict_start(trainer, pl_module)
        assert self.writer is not None
        mask_probs, class_probs = prediction["mask_probs"], prediction["class_probs"]
        paths = prediction.get("path")
        if paths is None:
            raise ValueError("PredictionWriter needs the image paths: the prediction batches must carry a 'path' entry")
        for i, path in enumerate(paths):
            try:
                image = read_image(path)
            except (OSError, ValueError) as error:
                self.writer.fail(str(path), str(error))
                continue
            try:
                result = build_prediction(
                    str(path),
                    image,
                    mask_probs[i, 0],
                    class_probs[i],
                    preprocessing=self._preprocessing,
                    mask_threshold=self._threshold,
                    class_names=self._class_names,
                    mask_gate=self.mask_gate,
                )
            except NonFiniteOutputError as error:
                self.writer.fail(str(path), str(error))
                continue
            self.writer.write(result)

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Write ``predictions.json`` and close the CSV; warn when images failed."""
        if self.writer is not None:
            writer, self.writer = self.writer, None
            writer.close()
            if writer.failures:
                # Every rank warns for its own images: each writes its own table.
                first = writer.failures[0]
                warnings.warn(
                    f"PredictionWriter: {len(writer.failures)} of {len(writer.failures) + len(writer.rows)} images "
                    f"got no prediction (listed under 'failed' in {writer.json_path}); first: {first.error}",
                    stacklevel=2,
                )


def _brain_tumor_datamodule(datamodule: LightningDataModule | None) -> BrainTumorDataModule:
    if not isinstance(datamodule, BrainTumorDataModule):
        found = "no datamodule" if datamodule is None else f"a {type(datamodule).__name__}"
        raise TypeError(
            f"PredictionWriter reads the image size and letterboxing from a BrainTumorDataModule, but the trainer "
            f"has {found}: predict with --data (python -m brain_mtl predict) or "
            "trainer.predict(module, datamodule=BrainTumorDataModule(...))"
        )
    return datamodule


def _brain_tumor_module(module: LightningModule) -> BrainTumorModule:
    if not isinstance(module, BrainTumorModule):
        raise TypeError(
            f"PredictionWriter writes the outputs of BrainTumorModule.predict_step (or a subclass's), not of a "
            f"{type(module).__name__}"
        )
    return module


def _warn_if_trained_differently(ckpt_path: str | os.PathLike | None, preprocessing: Preprocessing) -> None:
    """Warn when the datamodule resizes differently from the data the checkpoint was trained on.

    ``python -m brain_mtl predict --ckpt_path`` restores the model's arguments but takes the data arguments from
    the config and command line, so a different ``image_size`` or ``keep_aspect`` silently degrades predictions.
    """
    if not ckpt_path or not isinstance(ckpt_path, str | os.PathLike) or not os.path.isfile(ckpt_path):
        return
    try:
        trained = torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True).get(
            "datamodule_hyper_parameters"
        )
    except Exception:  # unreadable here means Lightning reports it; this check is only advice
        return
    if not trained:
        return
    expected = (int(trained.get("image_size", preprocessing.image_size)), bool(trained.get("keep_aspect", False)))
    if expected != (preprocessing.image_size, preprocessing.keep_aspect):
        rank_zero_warn(
            f"PredictionWriter: the checkpoint was trained with image_size={expected[0]}, keep_aspect={expected[1]}, "
            f"but the datamodule predicts with image_size={preprocessing.image_size}, "
            f"keep_aspect={preprocessing.keep_aspect}. Pass --data.image_size {expected[0]} "
            f"--data.keep_aspect {str(expected[1]).lower()} to predict as trained."
        )
