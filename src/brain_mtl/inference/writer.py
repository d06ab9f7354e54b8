"""A Lightning prediction writer for ``python -m brain_mtl predict``: the same files as ``predict-images``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lightning.pytorch.callbacks import BasePredictionWriter

from brain_mtl.inference.checkpoint import class_names_for
from brain_mtl.inference.outputs import OutputWriter
from brain_mtl.inference.predictor import build_prediction
from brain_mtl.inference.preprocessing import DEFAULT_IMAGE_SIZE, Preprocessing

__all__ = ["PredictionWriter"]


class PredictionWriter(BasePredictionWriter):
    """Lightning callback for ``python -m brain_mtl predict``: writes what ``predict-images`` writes.

    It reads ``predict_step``'s dicts (``mask_probs (B, 1, h, w)``, ``class_probs (B, C)``, ``path``,
    ``orig_size``), re-reads each original image for the overlay, cuts off letterbox padding, resizes the mask to
    the original size and writes ``<stem>_mask.png``, ``<stem>_overlay.png`` and ``predictions.csv/.json`` in
    ``output_dir``. The image size and letterboxing come from the datamodule (``image_size``, ``keep_aspect``).

    Args:
        output_dir: folder for the files.
        overlays: write overlay images.
        mask_threshold: probability threshold; default the module's ``mask_threshold``.
        mask_gate: empty the mask when the most probable class is ``no_tumor``.
    """

    def __init__(
        self,
        output_dir: str = "predictions",
        overlays: bool = True,
        mask_threshold: float | None = None,
        mask_gate: bool = False,
    ) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = output_dir
        self.overlays = overlays
        self.mask_threshold = mask_threshold
        self.mask_gate = mask_gate
        self.writer: OutputWriter | None = None
        self._preprocessing = Preprocessing()
        self._threshold = 0.5
        self._class_names: tuple[str, ...] = class_names_for(4)

    def on_predict_start(self, trainer: Any, pl_module: Any) -> None:
        """Open the output files and read the preprocessing settings from the datamodule."""
        datamodule = getattr(trainer, "datamodule", None)
        hparams = dict(getattr(datamodule, "hparams", {}) or {})
        size = getattr(datamodule, "image_size", None) or hparams.get("image_size", DEFAULT_IMAGE_SIZE)
        keep_aspect = getattr(datamodule, "keep_aspect", None)
        if keep_aspect is None:
            keep_aspect = hparams.get("keep_aspect", False)
        self._preprocessing = Preprocessing(image_size=int(size), keep_aspect=bool(keep_aspect))
        module_hparams = getattr(pl_module, "hparams", {}) or {}
        self._threshold = (
            float(self.mask_threshold)
            if self.mask_threshold is not None
            else float(module_hparams.get("mask_threshold", 0.5))
        )
        num_classes = int(module_hparams.get("num_classes", 4))
        self._class_names = class_names_for(num_classes)
        prefix = "predictions" if trainer.world_size == 1 else f"predictions_rank{trainer.global_rank}"
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
        trainer: Any,
        pl_module: Any,
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
        from brain_mtl.data.io import read_image

        for i, path in enumerate(paths):
            try:
                image = read_image(path)
            except (OSError, ValueError) as error:
                self.writer.fail(str(path), str(error))
                continue
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
            self.writer.write(result)

    def on_predict_end(self, trainer: Any, pl_module: Any) -> None:
        """Write ``predictions.json`` and close the CSV."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
