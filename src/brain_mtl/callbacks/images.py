"""TensorBoard pictures of a run: prediction grids on fixed validation images and the confusion matrix.

Plotting lives here rather than in the task's steps, so a subclass of the task keeps them for free.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only
from torchmetrics.classification import MulticlassConfusionMatrix

from brain_mtl.callbacks.tensorboard import tensorboard_writer
from brain_mtl.classes import CLASS_NAMES
from brain_mtl.data.transforms import denormalize
from brain_mtl.models.postprocess import postprocess
from brain_mtl.viz import confusion_matrix_image, image_grid, overlay

__all__ = ["ConfusionMatrixImage", "PredictionGrid"]


class PredictionGrid(Callback):
    """Every few epochs, draw the predictions on a fixed set of validation images into TensorBoard.

    Each tile shows the scan, the ground-truth outline (green), the predicted mask (red) and the true and predicted
    class with its probability. The images are the same every time, spread evenly over the validation
    segmentation set, so that a researcher can watch the masks form.

    Args:
        num_images: how many validation images to show.
        every_n_epochs: draw after every n-th validation epoch.
        ncols: columns of the grid.
    """

    def __init__(self, num_images: int = 8, every_n_epochs: int = 2, ncols: int = 4) -> None:
        self.num_images = num_images
        self.every_n_epochs = every_n_epochs
        self.ncols = ncols

    def _fixed_batch(self, trainer: Trainer) -> dict[str, Any] | None:
        loaders = trainer.val_dataloaders
        loader = loaders[0] if isinstance(loaders, list | tuple) else loaders
        dataset = getattr(loader, "dataset", None)
        if dataset is None or len(dataset) == 0:
            return None
        picks = np.unique(np.linspace(0, len(dataset) - 1, min(self.num_images, len(dataset))).astype(int))
        samples = [dataset[int(i)] for i in picks]
        return {key: torch.stack([torch.as_tensor(s[key]) for s in samples]) for key in ("image", "mask", "label")}

    @rank_zero_only
    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:  # noqa: D102
        writer = tensorboard_writer(trainer)
        if writer is None or trainer.sanity_checking or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        batch = self._fixed_batch(trainer)
        if batch is None:
            return
        with torch.no_grad():
            out = pl_module(batch["image"].to(pl_module.device))
        result = postprocess(*out, threshold=pl_module.hparams.get("mask_threshold", 0.5))
        masks, class_probs = result.masks.cpu(), result.class_probs.cpu()
        tiles = []
        for i in range(len(batch["image"])):
            pred_class = int(class_probs[i].argmax())
            caption = [
                f"true {CLASS_NAMES[int(batch['label'][i])]}",
                f"pred {CLASS_NAMES[pred_class]} {float(class_probs[i, pred_class]):.2f}",
            ]
            tiles.append(
                overlay(
                    denormalize(batch["image"][i]),
                    pred_mask=masks[i, 0].numpy(),
                    true_mask=batch["mask"][i, 0].numpy(),
                    caption=caption,
                )
            )
        writer.add_image("val/predictions", image_grid(tiles, self.ncols), trainer.global_step, dataformats="HWC")


class ConfusionMatrixImage(Callback):
    """Log the confusion matrix of the validation and test images (all four classes) as an image each epoch.

    Tags: ``val/confusion_matrix`` and ``test/confusion_matrix``. The counts are synchronised across processes.

    Args:
        num_classes: number of classes.
    """

    def __init__(self, num_classes: int = len(CLASS_NAMES)) -> None:
        self.num_classes = num_classes
        self.matrix: MulticlassConfusionMatrix | None = None

    def _update(self, pl_module: LightningModule, outputs: Any, batch: Any) -> None:
        if not isinstance(outputs, dict) or "eval" not in outputs:
            return
        if self.matrix is None:
            self.matrix = MulticlassConfusionMatrix(self.num_classes)
        self.matrix = self.matrix.to(pl_module.device)
        self.matrix.update(outputs["eval"].class_logits.argmax(dim=1), batch["label"])

    def _log(self, trainer: Trainer, stage: str) -> None:
        if self.matrix is None or trainer.sanity_checking:
            self.matrix = None
            return
        counts = self.matrix.compute().cpu().numpy()  # collective under DDP: every rank calls it
        self.matrix = None
        writer = tensorboard_writer(trainer)
        if trainer.is_global_zero and writer is not None:
            picture = confusion_matrix_image(counts, CLASS_NAMES[: self.num_classes])
            writer.add_image(f"{stage}/confusion_matrix", picture, trainer.global_step, dataformats="HWC")

    def on_validation_batch_end(  # noqa: D102
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        self._update(pl_module, outputs, batch)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:  # noqa: D102
        self._update(pl_module, outputs, batch)

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:  # noqa: D102
        self._log(trainer, "val")

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:  # noqa: D102
        self._log(trainer, "test")
