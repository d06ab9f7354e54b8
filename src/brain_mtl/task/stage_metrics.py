"""What the task logs at each step and epoch: the metric sets per stage, the losses, the model-selection score.

:class:`StageMetricsMixin` is the logging half of :class:`~brain_mtl.task.module.BrainTumorModule`, kept apart from
what the task computes. It reads ``self.metrics`` (built by ``configure_metrics``) and ``self.hparams``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from brain_mtl.classes import NO_TUMOR
from brain_mtl.models import UNetOutput
from brain_mtl.models.postprocess import binarize
from brain_mtl.task.losses import LossParts

__all__ = ["Batch", "StageMetricsMixin", "scored_for_masks"]

# Metric objects are updated (not called) in the step, so Lightning computes and resets them once per epoch.
_EPOCH = {"on_step": False, "on_epoch": True, "add_dataloader_idx": False}

Batch = dict[str, Any]
"""One loader's batch: ``image`` (B, 3, H, W), ``label`` (B,), ``path`` list[str], and ``mask`` (B, 1, H, W) with
``has_mask`` (B,) where masks are known. A step receives one per stream: ``{"seg": ..., "cls": ...}`` in training,
``{"eval": ...}`` in validation and test."""


def scored_for_masks(batch: Batch) -> Tensor:
    """(B,) bool: tumour images whose ground-truth mask is known (the images mask metrics are computed on)."""
    return batch["has_mask"].reshape(-1).bool() & (batch["label"] != NO_TUMOR)


class StageMetricsMixin:
    """Updates and logs ``{stage}/seg/...``, ``{stage}/cls/...``, ``{stage}/loss...`` and ``{stage}/score``."""

    metrics: nn.ModuleDict
    hparams: Any

    def update_stage_metrics(
        self, stage: str, batch: dict[str, Batch], outputs: dict[str, UNetOutput | Tensor], parts: LossParts
    ) -> None:
        """Update the stage's metric sets and losses with one step's outputs, and log them (epoch means)."""
        metrics = self.metrics
        seg_images: list[tuple[Tensor, Tensor]] = []  # (mask logits, truth) of the images mask metrics score
        class_scores: list[tuple[Tensor, Tensor]] = []  # (class logits, labels)
        healthy_masks: list[Tensor] = []  # mask logits of images known to be tumour-free
        if "seg" in outputs:
            seg_batch, seg_out = batch["seg"], outputs["seg"]
            tumour = seg_batch["label"] != NO_TUMOR
            seg_images.append((seg_out.mask_logits[tumour], seg_batch["mask"][tumour]))
        if "cls" in outputs:
            cls_out = outputs["cls"]
            class_scores.append(
                (cls_out.class_logits if isinstance(cls_out, UNetOutput) else cls_out, batch["cls"]["label"])
            )
        if "eval" in outputs:
            eval_batch, eval_out = batch["eval"], outputs["eval"]
            scored = scored_for_masks(eval_batch)
            seg_images.append((eval_out.mask_logits[scored], eval_batch["mask"][scored]))
            class_scores.append((eval_out.class_logits, eval_batch["label"]))
            healthy_masks.append(eval_out.mask_logits[eval_batch["label"] == NO_TUMOR])
        if seg_images and self._split_has_masks(stage):
            # Pixel metrics on tumour images only (the literature's "Dice on tumour images"); healthy scans are
            # scored by the false-mask rate instead.
            n_scored = sum(len(truth) for _, truth in seg_images)
            for logits, truth in seg_images:
                if len(truth):
                    metrics[f"{stage}_seg"].update(torch.sigmoid(logits.float()), truth.long())
            # Logged on every batch, updated or not: under DDP every process must compute (and so synchronise)
            # the same set of metrics at epoch end, whatever images its shard happened to hold.
            self.log_dict(metrics[f"{stage}_seg"], batch_size=max(1, n_scored), **_EPOCH)
        for logits, labels in class_scores:
            metrics[f"{stage}_cls"].update(logits.float(), labels)
            self.log_dict(metrics[f"{stage}_cls"], batch_size=len(labels), **_EPOCH)
        for logits in healthy_masks:
            # Updated with every batch, empty or not: a validation epoch without a healthy scan then computes 0
            # without torchmetrics' warning that compute() was called before update().
            metrics[f"{stage}_false_mask"].update(binarize(torch.sigmoid(logits.float()), self.hparams.mask_threshold))
            self.log(
                f"{stage}/seg/false_mask_rate",
                metrics[f"{stage}_false_mask"],
                batch_size=max(1, len(logits)),
                **_EPOCH,
            )
        size = self._batch_size(batch)
        metrics[f"{stage}_loss"].update(parts.total.detach(), weight=size)
        if parts.mask is not None:
            metrics[f"{stage}_loss_mask"].update(parts.mask.detach(), weight=size)
        if parts.cls is not None:
            metrics[f"{stage}_loss_class"].update(parts.cls.detach(), weight=size)
        if stage == "train":
            # This process's value, for the progress bar; the epoch's mean over every process is ``train/loss``.
            self.log("train/loss_step", parts.total, prog_bar=True, on_step=True, on_epoch=False, batch_size=size)

    def _split_has_masks(self, stage: str) -> bool:
        """False when the datamodule says that the split this stage evaluates holds no mask.

        A classification-only dataset tested on: its pixel metrics are then not logged rather than logged as 0. The
        same answer on every process, so DDP's processes log the same metrics.
        """
        try:
            datamodule = self.trainer.datamodule
        except RuntimeError:  # not attached to a trainer
            return True
        has_masks = getattr(datamodule, "split_has_masks", None)
        split = {"val": "val", "test": getattr(datamodule, "test_split", "test")}.get(stage)
        return True if has_masks is None or split is None else bool(has_masks(split))

    @staticmethod
    def _batch_size(batch: dict[str, Batch]) -> int:
        return sum(len(b["label"]) for b in batch.values())

    def log_epoch_losses(self, stage: str) -> None:
        """Log the epoch's mean loss ``{stage}/loss`` and its parts ``{stage}/loss/mask``, ``{stage}/loss/class``.

        Each is the mean over the epoch's batches (weighted by batch size, over every process) of what the
        criterion returned: the total is the criterion's own weighted sum, never re-weighted here.
        """
        for name, key in (("loss", "loss"), ("loss/mask", "loss_mask"), ("loss/class", "loss_class")):
            metric = self.metrics[f"{stage}_{key}"]
            if not self._seen_by_any_process(metric):
                continue
            self.log(f"{stage}/{name}", metric.compute(), prog_bar=name == "loss" and stage == "val")
            metric.reset()

    def _seen_by_any_process(self, metric: nn.Module) -> bool:
        """Whether a metric was updated in this epoch by any process.

        Every process gets the same answer, so all of them take the same (synchronising) branch.
        """
        return bool(self.trainer.strategy.reduce_boolean_decision(metric.update_count > 0, all=False))

    def log_score(self, stage: str) -> None:
        """``{stage}/score``: the mean of pooled Dice and macro F1, one number for model selection."""
        seg, cls = self.metrics[f"{stage}_seg"], self.metrics[f"{stage}_cls"]
        if self._seen_by_any_process(seg["dice"]) and self._seen_by_any_process(cls["f1"]):
            score = (seg["dice"].compute() + cls["f1"].compute()) / 2
            self.log(f"{stage}/score", score, prog_bar=stage == "val")
