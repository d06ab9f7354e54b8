"""The Lightning task: the U-Net, its joint loss and its metrics, with one shared step for every stage."""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from lightning.pytorch import LightningModule
from torch import Tensor, nn
from torchmetrics import MeanMetric

from brain_mtl.classes import CLASS_NAMES, NO_TUMOR
from brain_mtl.errors import divergence_error
from brain_mtl.losses import JointLoss, LossParts, MaskLoss
from brain_mtl.metrics import FalseMaskRate, classification_metrics, image_stats, segmentation_metrics
from brain_mtl.models import UNet, UNetOutput
from brain_mtl.postprocess import binarize, probabilities

# Metric objects are updated (not called) in the step, so Lightning computes and resets them once per epoch.
_EPOCH = {"on_step": False, "on_epoch": True, "add_dataloader_idx": False}

Batch = dict[str, Any]
"""One loader's batch: ``image`` (B, 3, H, W), ``label`` (B,), ``path`` list[str], and ``mask`` (B, 1, H, W) for
segmentation batches."""


def _rng_states() -> dict[str, Any]:
    # Plain types and tensors only, so that checkpoints stay loadable with torch.load(weights_only=True).
    name, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002 (the global state is what we restore)
    return {
        "torch": torch.get_rng_state(),
        "numpy": (str(name), torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)),
        "python": random.getstate(),
    }


def _set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))  # noqa: NPY002
    random.setstate(states["python"])


class BrainTumorModule(LightningModule):
    """Joint tumour segmentation and slice classification with one U-Net.

    A training step receives ``{"seg": batch, "cls": batch}``: the segmentation batch goes through the whole
    network (mask loss + class loss), the classification batch through the encoder and classification head only
    (class loss); one joint loss, one optimizer step. Validation and test receive every image of the split once
    (the datamodule's ``evaluation_dataloader``): mask metrics on the tumour images with a known mask, class metrics
    over all four classes, and the share of healthy scans given a mask; a test step also returns per-image
    statistics, from which the evaluation report is built (no second pass over the split).

    Research code changes one part by overriding one hook: :meth:`configure_models`, :meth:`configure_losses`,
    :meth:`configure_metrics` or :meth:`compute_loss`.

    Args:
        in_channels: channels of the input images (3: gray scans are read as RGB).
        num_classes: number of slice classes (glioma, meningioma, pituitary, no_tumor).
        base_channels: channels of the first U-Net stage, doubled at each down stage (reference: 64).
        depth: number of down stages; image sides must be multiples of 2**depth (reference: 4).
        attention: put attention gates on the skip connections (Attention U-Net).
        classifier_hidden: hidden units of the classification head on the bottleneck (reference: 256).
        classifier_dropout: dropout of the classification head (reference: 0.6).
        mask_loss: ``bce`` (BCE with logits, the reference) or ``dice_bce`` (soft Dice + BCE).
        mask_loss_weight: weight of the mask loss in the joint loss.
        class_loss_weight: weight of the cross-entropy in the joint loss.
        pos_weight: BCE weight of tumour pixels; above 1 counters the small tumour area (1 = plain BCE).
        label_smoothing: cross-entropy label smoothing in [0, 1).
        class_weights: optional cross-entropy weight per class, in class order.
        lr: learning rate of the default AdamW (replaced when the config has an ``optimizer`` group).
        weight_decay: weight decay of the default AdamW.
        lr_schedule: ``constant`` (the reference) or ``cosine`` (decay to 0 over the run, stepped per batch).
        warmup_epochs: raise the learning rate linearly from 0 over this many epochs first (fractions allowed),
            then follow ``lr_schedule``.
        mask_threshold: probability above which a pixel belongs to the predicted mask.
        false_mask_min_area: smallest predicted area in pixels (at network resolution) counted as a mask on a
            healthy scan for the ``false_mask_rate`` metric.
        encoder: ``reference`` (the notebook's from-scratch encoder; ``base_channels`` and ``depth`` apply) or a
            timm model name with ``features_only`` support: ``resnet18/34/50``, ``efficientnet_b0`` ... ``b4``,
            ``convnext_tiny/small``, ``regnety_008``, ``mobilenetv3_large_100``, ...
        encoder_weights: timm encoders: ``imagenet`` (timm's pretrained weights, fetched once on a machine with
            network), the path of a local weights file (the encoder's state dict or a timm checkpoint), or null
            (random init). Loaded when a fit starts from scratch; a resumed fit or a checkpoint needs none.
        encoder_lr_multiplier: the encoder's learning rate is ``lr`` times this (e.g. 0.1 for a pretrained
            encoder under a new decoder).
        tta: test-time augmentation of ``test`` and ``predict`` (never of validation): ``none``, ``flip`` (the image
            and its horizontal mirror) or ``d4`` (the 8 flips, rotations and transposes). Mask and class
            probabilities are averaged over the views (:mod:`brain_mtl.inference.tta`); the logged test metrics and
            the evaluation report both score the averages.
        channels_last: keep the network's weights and input batches in the channels-last memory layout (NHWC),
            which oneDNN (CPU) and cuDNN (tensor cores) run faster; numerically the same network.
        compile: compile the network with ``torch.compile`` when a fit, validation, test or prediction starts
            (the weights' names do not change). Pays a compile time first; see ``docs/benchmarks.md``.
        freeze_encoder_epochs: keep the encoder frozen (BatchNorm statistics included) for this many epochs, then
            train it with ``lr * encoder_lr_multiplier`` (Lightning's BaseFinetuning).
    """

    architecture_hparams: ClassVar[tuple[str, ...]] = (
        "in_channels",
        "num_classes",
        "base_channels",
        "depth",
        "attention",
        "classifier_hidden",
        "encoder",
    )
    """Hyperparameters that shape the weights: a checkpoint's values win over a config's (see the CLI)."""

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = len(CLASS_NAMES),
        base_channels: int = 64,
        depth: int = 4,
        attention: bool = False,
        classifier_hidden: int = 256,
        classifier_dropout: float = 0.6,
        mask_loss: MaskLoss = "bce",
        mask_loss_weight: float = 1.0,
        class_loss_weight: float = 1.0,
        pos_weight: float = 1.0,
        label_smoothing: float = 0.0,
        class_weights: Sequence[float] | None = None,
        lr: float = 1e-4,
        weight_decay: float = 1e-2,
        lr_schedule: Literal["constant", "cosine"] = "constant",
        mask_threshold: float = 0.5,
        false_mask_min_area: int = 10,
        encoder: str = "reference",
        encoder_weights: str | None = None,
        encoder_lr_multiplier: float = 1.0,
        freeze_encoder_epochs: int = 0,
        warmup_epochs: float = 0.0,
        tta: Literal["none", "flip", "d4"] = "none",
        channels_last: bool = False,
        compile: bool = False,
    ) -> None:
        super().__init__()
        if tta not in ("none", "flip", "d4"):
            raise ValueError(f"tta must be 'none', 'flip' or 'd4', got {tta!r}")
        self.save_hyperparameters()
        self.configure_models()
        # Recorded for readers of the checkpoint (the network applies it itself: its input is always the pipeline's
        # normalisation). Not an __init__ argument: load_from_checkpoint passes only those back.
        self.hparams["input_normalization"] = dict(getattr(self.model, "normalization", {}))
        self.configure_losses()
        self.configure_metrics()

    # ------------------------------------------------------------------ hooks a subclass overrides
    def configure_models(self) -> None:
        """Build ``self.model``.

        Any network whose ``forward`` returns a :class:`UNetOutput` and that has ``classify(x)`` (class logits from
        the encoder only) fits.
        """
        hp = self.hparams
        self.model = UNet(
            in_channels=hp.in_channels,
            num_classes=hp.num_classes,
            base_channels=hp.base_channels,
            depth=hp.depth,
            attention=hp.attention,
            classifier_hidden=hp.classifier_hidden,
            classifier_dropout=hp.classifier_dropout,
            encoder=hp.encoder,
        )

    def configure_losses(self) -> None:
        """Build ``self.criterion``.

        It is called as ``criterion(mask_logits, mask, class_logits, labels)`` and returns :class:`LossParts`.
        """
        hp = self.hparams
        self.criterion = JointLoss(
            mask_loss=hp.mask_loss,
            mask_weight=hp.mask_loss_weight,
            class_weight=hp.class_loss_weight,
            label_smoothing=hp.label_smoothing,
            class_weights=hp.class_weights,
            pos_weight=hp.pos_weight,
        )

    def configure_metrics(self) -> None:
        """Build one metric set per stage in ``self.metrics``.

        Keys: ``{stage}_seg``, ``{stage}_cls``, ``{stage}_false_mask``, ``{stage}_loss``, ``{stage}_loss_mask``,
        ``{stage}_loss_class``; logged as ``{stage}/seg/...`` and ``{stage}/cls/...``.
        """
        seg = segmentation_metrics(self.hparams.mask_threshold)
        cls = classification_metrics(self.hparams.num_classes)
        metrics: dict[str, nn.Module] = {}
        for stage in ("train", "val", "test"):
            metrics[f"{stage}_seg"] = seg.clone(prefix=f"{stage}/seg/")
            metrics[f"{stage}_cls"] = cls.clone(prefix=f"{stage}/cls/")
            metrics[f"{stage}_false_mask"] = FalseMaskRate(self.hparams.false_mask_min_area)
            metrics[f"{stage}_loss"] = MeanMetric()
            metrics[f"{stage}_loss_mask"] = MeanMetric()
            metrics[f"{stage}_loss_class"] = MeanMetric()
        self.metrics = nn.ModuleDict(metrics)

    def compute_loss(self, outputs: dict[str, UNetOutput | Tensor], batch: dict[str, Batch], stage: str) -> LossParts:
        """Joint loss of one step.

        Args:
            outputs: per stream, the network's output: ``seg`` and ``eval`` a :class:`UNetOutput`, ``cls`` a
                UNetOutput or class logits (B, C).
            batch: the matching batches.
            stage: ``train``, ``val`` or ``test``.

        Returns:
            LossParts: the total and each part. In training both streams' class logits count (the segmentation
            images are labelled too). An ``eval`` batch (validation and test: every image of the split once) gives
            the mask loss on its tumour images with a known mask and the class loss on every image.
        """
        masks, mask_truth, logits, labels = [], [], [], []
        if "seg" in outputs:
            seg_out = outputs["seg"]
            masks.append(seg_out.mask_logits)
            mask_truth.append(batch["seg"]["mask"])
            if stage == "train":
                logits.append(seg_out.class_logits)
                labels.append(batch["seg"]["label"])
        if "cls" in outputs:
            cls_out = outputs["cls"]
            logits.append(cls_out.class_logits if isinstance(cls_out, UNetOutput) else cls_out)
            labels.append(batch["cls"]["label"])
        if "eval" in outputs:
            eval_out, eval_batch = outputs["eval"], batch["eval"]
            scored = self._scored_for_masks(eval_batch)
            if scored.any():
                masks.append(eval_out.mask_logits[scored])
                mask_truth.append(eval_batch["mask"][scored])
            logits.append(eval_out.class_logits)
            labels.append(eval_batch["label"])
        return self.criterion(
            torch.cat(masks) if masks else None,
            torch.cat(mask_truth) if mask_truth else None,
            torch.cat(logits) if logits else None,
            torch.cat(labels) if labels else None,
        )

    @staticmethod
    def _scored_for_masks(batch: Batch) -> Tensor:
        """(B,) bool: tumour images whose ground-truth mask is known (the images mask metrics are computed on)."""
        return batch["has_mask"].reshape(-1).bool() & (batch["label"] != NO_TUMOR)

    # ------------------------------------------------------------------ forward and the shared step
    def forward(self, images: Tensor) -> UNetOutput:
        """Run the network on (B, 3, H, W) normalised images; returns mask logits (B, 1, H, W) and class logits."""
        return self.model(images)

    def shared_step(self, batch: dict[str, Batch], stage: str) -> dict[str, Any]:
        """The step of every stage.

        Args:
            batch: training: ``{"seg": ..., "cls": ...}`` (either may be missing or None: a loader that ran out);
                validation and test: ``{"eval": ...}``, every image of the split once, with ``mask`` and
                ``has_mask``.
            stage: ``train``, ``val`` or ``test``.

        Returns:
            ``{"loss": total}`` plus each stream's detached output (``seg``, ``cls``, ``eval``), and for ``eval``
            batches ``stats``: the per-image :class:`~brain_mtl.metrics.ImageStats` (HD95 in ``test`` only) that the
            evaluation report collects.
        """
        streams = {name: b for name, b in batch.items() if b is not None}
        outputs: dict[str, UNetOutput | Tensor] = {}
        if "seg" in streams:
            outputs["seg"] = self(streams["seg"]["image"])
        if "cls" in streams:
            # Only the class logits are needed: the encoder-only path skips the decoder's cost.
            outputs["cls"] = self.model.classify(streams["cls"]["image"])
        if "eval" in streams:
            outputs["eval"] = self.evaluation_forward(streams["eval"]["image"], stage)
        for name in ("seg", "eval"):
            if name in outputs and outputs[name].mask_logits.shape[-2:] != streams[name]["mask"].shape[-2:]:
                raise ValueError(
                    f"the model's mask logits are {tuple(outputs[name].mask_logits.shape[-2:])} but the ground-truth "
                    f"masks are {tuple(streams[name]['mask'].shape[-2:])}; the loader must feed images and masks of "
                    "the size the model predicts"
                )
        parts = self.compute_loss(outputs, streams, stage)
        self._update_metrics(stage, streams, outputs, parts)
        result: dict[str, Any] = {
            "loss": parts.total,
            **{
                k: (UNetOutput(*(t.detach() for t in v)) if isinstance(v, UNetOutput) else v.detach())
                for k, v in outputs.items()
            },
        }
        if "eval" in outputs:
            mask_probs, class_probs = probabilities(*outputs["eval"])
            result["stats"] = image_stats(
                mask_probs,
                class_probs,
                streams["eval"]["mask"],
                streams["eval"]["has_mask"],
                self.hparams.mask_threshold,
                with_hd95=stage == "test",
            )
        return result

    def evaluation_forward(self, images: Tensor, stage: str) -> UNetOutput:
        """The network's output on validation, test and predict images.

        With ``tta`` (test and predict only) the mask and class probabilities are averaged over the views of
        :func:`brain_mtl.inference.tta.tta_probs`, and returned as logits of those averages (``logit(p)`` and
        ``log(p)``): losses, metrics and the report then all score the averaged probabilities.
        """
        if stage == "val" or self.hparams.tta == "none":
            return self(images)
        from brain_mtl.inference.tta import tta_probs

        mask_probs, class_probs = tta_probs(self, images, self.hparams.tta)
        eps = torch.finfo(mask_probs.dtype).eps
        return UNetOutput(torch.logit(mask_probs, eps), torch.log(class_probs.clamp_min(eps)))

    def _update_metrics(
        self, stage: str, batch: dict[str, Batch], outputs: dict[str, UNetOutput | Tensor], parts: LossParts
    ) -> None:
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
            scored = self._scored_for_masks(eval_batch)
            seg_images.append((eval_out.mask_logits[scored], eval_batch["mask"][scored]))
            class_scores.append((eval_out.class_logits, eval_batch["label"]))
            healthy_masks.append(eval_out.mask_logits[eval_batch["label"] == NO_TUMOR])
        if seg_images:
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
            if len(logits):
                metrics[f"{stage}_false_mask"].update(
                    binarize(torch.sigmoid(logits.float()), self.hparams.mask_threshold)
                )
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

    @staticmethod
    def _batch_size(batch: dict[str, Batch]) -> int:
        return sum(len(b["label"]) for b in batch.values())

    def _log_epoch_losses(self, stage: str) -> None:
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

    def _log_score(self, stage: str) -> None:
        """``{stage}/score``: the mean of pooled Dice and macro F1, one number for model selection."""
        seg, cls = self.metrics[f"{stage}_seg"], self.metrics[f"{stage}_cls"]
        if self._seen_by_any_process(seg["dice"]) and self._seen_by_any_process(cls["f1"]):
            score = (seg["dice"].compute() + cls["f1"].compute()) / 2
            self.log(f"{stage}/score", score, prog_bar=stage == "val")

    # ------------------------------------------------------------------ Lightning's entry points
    def training_step(self, batch: dict[str, Batch], batch_idx: int) -> Tensor:
        """One joint step on ``{"seg": ..., "cls": ...}`` (from a CombinedLoader)."""
        return self.shared_step(batch, "train")["loss"]

    def on_before_backward(self, loss: Tensor) -> None:
        """Stop training at the first non-finite loss, before it turns the weights into NaN.

        Raises:
            DivergenceError: naming the step and the last good checkpoint. Every process takes the same decision,
                so that a DDP run stops everywhere instead of hanging.
        """
        finite = bool(torch.isfinite(loss.detach()).all())
        if not self.trainer.strategy.reduce_boolean_decision(finite, all=True):
            value = float(loss.detach().float()) if not finite else "not finite on another process"
            raise divergence_error(self.trainer, f"the training loss is {value}")

    def validation_step(self, batch: Batch, batch_idx: int) -> dict[str, Any]:
        """One batch of the validation split (every image once, with its mask where known)."""
        return self.shared_step({"eval": batch}, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> dict[str, Any]:
        """As :meth:`validation_step`, on the test split; also returns the per-image ``stats`` with HD95."""
        return self.shared_step({"eval": batch}, "test")

    def predict_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any]:
        """Mask probabilities (B, 1, H, W) and class probabilities (B, C) for a batch of images (``tta`` applies).

        Returns:
            ``{"mask_probs", "class_probs", "path", "orig_size"}`` (the last two passed through from the batch
            when present), for a prediction writer.
        """
        mask_probs, class_probs = probabilities(*self.evaluation_forward(batch["image"], "predict"))
        result = {"mask_probs": mask_probs, "class_probs": class_probs}
        for key in ("path", "orig_size"):
            if key in batch:
                result[key] = batch[key]
        return result

    def on_train_epoch_end(self) -> None:  # noqa: D102
        self._log_epoch_losses("train")

    def on_validation_epoch_end(self) -> None:  # noqa: D102
        self._log_epoch_losses("val")
        self._log_score("val")

    def on_test_epoch_end(self) -> None:  # noqa: D102
        self._log_epoch_losses("test")
        self._log_score("test")

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Put the batch's images in the network's memory layout (channels-last when ``channels_last``)."""
        if self.hparams.get("channels_last", False):
            streams = batch.values() if isinstance(batch, dict) and "image" not in batch else [batch]
            for stream in streams:
                if isinstance(stream, dict) and isinstance(stream.get("image"), Tensor) and stream["image"].dim() == 4:
                    stream["image"] = stream["image"].contiguous(memory_format=torch.channels_last)
        return batch

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:  # noqa: D102
        states = checkpoint.get("brain_mtl_rng_states")
        if states is not None:
            _set_rng_states(states)

    def setup(self, stage: str) -> None:
        """Prepare the network for a stage.

        Sets the memory layout (``channels_last``), compiles it (``compile``), and loads the pretrained encoder
        weights when a fit starts from scratch (a resumed fit restores its own).
        """
        if self.hparams.get("channels_last", False):
            self.model.to(memory_format=torch.channels_last)
        if self.hparams.get("compile", False) and not getattr(self.model, "_compiled_call_impl", None):
            self.model.compile()
        weights = self.hparams.encoder_weights
        if stage == "fit" and weights and self.trainer.ckpt_path is None:
            if self.model.is_reference:
                raise ValueError("model.encoder_weights needs a timm encoder (model.encoder), not 'reference'")
            self.model.encoder.load_weights(weights)

    def configure_callbacks(self) -> list[Any]:
        """The encoder-freezing callback when ``freeze_encoder_epochs`` > 0."""
        from brain_mtl.callbacks.finetuning import EncoderFreeze

        epochs = self.hparams.freeze_encoder_epochs
        return [EncoderFreeze(epochs)] if epochs > 0 else []

    def encoder_parameters(self) -> list[nn.Parameter]:
        """The encoder's parameters (the reference encoder's included), for parameter groups and freezing."""
        return list(self.model.encoder.parameters())

    def configure_optimizers(self) -> Any:
        """AdamW with ``lr`` and ``weight_decay`` (the reference recipe), optionally warm-up and cosine decay.

        The encoder is its own parameter group at ``lr * encoder_lr_multiplier``, frozen or not: AdamW skips
        parameters without gradients (no step, no weight decay), and the schedule covers the group from the start.
        A config's ``optimizer`` and ``lr_scheduler`` groups (LightningCLI) replace this method when given.
        """
        hp = self.hparams
        encoder = self.encoder_parameters()
        encoder_ids = {id(p) for p in encoder}
        rest = [p for p in self.parameters() if id(p) not in encoder_ids]
        groups = [
            {"params": rest, "lr": hp.lr, "name": "decoder_and_heads"},
            {"params": encoder, "lr": hp.lr * hp.encoder_lr_multiplier, "name": "encoder"},
        ]
        # The fused CUDA kernel: one launch for every parameter instead of several per tensor.
        fused = all(p.is_cuda for group in groups for p in group["params"]) and bool(encoder)
        optimizer = torch.optim.AdamW(groups, lr=hp.lr, weight_decay=hp.weight_decay, fused=fused or None)
        if hp.lr_schedule == "constant" and hp.warmup_epochs <= 0:
            return optimizer
        total_steps = max(1, int(self.trainer.estimated_stepping_batches))
        epochs = self.trainer.max_epochs if self.trainer.max_epochs and self.trainer.max_epochs > 0 else 1
        warmup_steps = min(total_steps, round(hp.warmup_epochs * total_steps / epochs))
        factor = functools.partial(
            _lr_factor, warmup_steps=warmup_steps, total_steps=total_steps, cosine=hp.lr_schedule == "cosine"
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store the random number generators' states in the checkpoint.

        A resumed fit draws the same shuffles, augmentations and dropout masks as an
        uninterrupted one (exact for resumption at an epoch boundary with ``num_workers=0``; worker processes
        reseed from the restored state).
        """
        checkpoint["brain_mtl_rng_states"] = _rng_states()


def _lr_factor(step: int, warmup_steps: int, total_steps: int, cosine: bool) -> float:
    """Learning-rate factor at ``step``: linear warm-up from 0, then constant or a cosine decay to 0."""
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    if not cosine:
        return 1.0
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
