"""The Lightning task: the U-Net, its joint loss and its metrics, with one shared step for every stage."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import torch
from jsonargparse.typing import OpenUnitInterval
from lightning.pytorch import LightningModule
from torch import Tensor, nn
from torchmetrics import MeanMetric

from brain_mtl.classes import CLASS_NAMES
from brain_mtl.errors import divergence_error
from brain_mtl.evaluation.metrics import image_stats
from brain_mtl.models import UNet, UNetConfig, UNetOutput
from brain_mtl.models.postprocess import probabilities
from brain_mtl.models.tta import tta_output
from brain_mtl.task.finetuning import EncoderFreeze
from brain_mtl.task.losses import JointLoss, LossParts, MaskLoss
from brain_mtl.task.metrics import FalseMaskRate, classification_metrics, segmentation_metrics
from brain_mtl.task.optim import joint_adamw, warmup_then_schedule
from brain_mtl.task.rng import rng_states, set_rng_states
from brain_mtl.task.stage_metrics import Batch, StageMetricsMixin, scored_for_masks


class BrainTumorModule(StageMetricsMixin, LightningModule):
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
        lr_schedule_clock: ``steps`` (the cosine ends at the last step) or ``time`` (it ends at the last step or at
            ``trainer.max_time``, whichever comes first: a wall-clock budget ends in a finished decay on a machine
            of any speed; set ``max_steps``/``max_epochs`` above what the time allows; warm-up still counts
            epochs; one device only, since each process would read its own clock).
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
            probabilities are averaged over the views (:mod:`brain_mtl.models.tta`); the logged test metrics and
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
        mask_threshold: OpenUnitInterval = 0.5,
        false_mask_min_area: int = 10,
        encoder: str = "reference",
        encoder_weights: str | None = None,
        encoder_lr_multiplier: float = 1.0,
        freeze_encoder_epochs: int = 0,
        warmup_epochs: float = 0.0,
        lr_schedule_clock: Literal["steps", "time"] = "steps",
        tta: Literal["none", "flip", "d4"] = "none",
        channels_last: bool = True,
        compile: bool = False,
    ) -> None:
        mask_threshold = float(mask_threshold)  # a plain float in the checkpoint (the config type subclasses it)
        if not 0.0 < mask_threshold < 1.0:
            raise ValueError(f"mask_threshold must be strictly between 0 and 1, got {mask_threshold}")
        super().__init__()
        if tta not in ("none", "flip", "d4"):
            raise ValueError(f"tta must be 'none', 'flip' or 'd4', got {tta!r}")
        self.save_hyperparameters()
        self._compiled = False
        self.ensemble: dict[str, Any] | None = None
        """Set when ``self.model`` is an ensemble file's members (``{"ensemble": file, "ensemble_members": [...]}``),
        which the evaluation report records."""
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
        self.model = UNet(**UNetConfig.from_mapping(self.hparams))  # the architecture's keys of the hyperparameters

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
            scored = scored_for_masks(eval_batch)
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

    # ------------------------------------------------------------------ forward and the shared step
    def forward(self, images: Tensor) -> UNetOutput:
        """Run the network on (B, 3, H, W) normalised images; returns mask logits (B, 1, H, W) and class logits."""
        return self.model(self.to_layout(images))

    def shared_step(self, batch: dict[str, Batch], stage: str) -> dict[str, Any]:
        """The step of every stage.

        Args:
            batch: training: ``{"seg": ..., "cls": ...}`` (either may be missing or None: a loader that ran out);
                validation and test: ``{"eval": ...}``, every image of the split once, with ``mask`` and
                ``has_mask``.
            stage: ``train``, ``val`` or ``test``.

        Returns:
            ``{"loss": total}`` plus each stream's detached output (``seg``, ``cls``, ``eval``), and in ``test``
            ``stats``: the per-image :class:`~brain_mtl.metrics.ImageStats` that the evaluation report collects
            (computed in test only: they move the masks to the CPU, which validation has no use for).
        """
        streams = {name: b for name, b in batch.items() if b is not None}
        outputs: dict[str, UNetOutput | Tensor] = {}
        if "seg" in streams:
            outputs["seg"] = self(streams["seg"]["image"])
        if "cls" in streams:
            # Only the class logits are needed: the encoder-only path skips the decoder's cost.
            outputs["cls"] = self.model.classify(self.to_layout(streams["cls"]["image"]))
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
        self.update_stage_metrics(stage, streams, outputs, parts)
        result: dict[str, Any] = {
            "loss": parts.total,
            **{
                k: (UNetOutput(*(t.detach() for t in v)) if isinstance(v, UNetOutput) else v.detach())
                for k, v in outputs.items()
            },
        }
        if stage == "test" and "eval" in outputs:
            mask_probs, class_probs = probabilities(*outputs["eval"])
            result["stats"] = image_stats(
                mask_probs,
                class_probs,
                streams["eval"]["mask"],
                streams["eval"]["has_mask"],
                self.hparams.mask_threshold,
            )
        return result

    def evaluation_forward(self, images: Tensor, stage: str) -> UNetOutput:
        """The network's output on validation, test and predict images.

        With ``tta`` (test and predict only) the mask and class probabilities are averaged over the views of
        :func:`brain_mtl.models.tta.tta_probs`, and returned as logits of those averages (``logit(p)`` and
        ``log(p)``): losses, metrics and the report then all score the averaged probabilities.
        """
        if stage == "val" or self.hparams.tta == "none":
            return self(images)
        return tta_output(self, images, self.hparams.tta)

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
        self.log_epoch_losses("train")

    def on_validation_epoch_end(self) -> None:  # noqa: D102
        self.log_epoch_losses("val")
        self.log_score("val")

    def on_test_epoch_end(self) -> None:  # noqa: D102
        self.log_epoch_losses("test")
        self.log_score("test")

    def to_layout(self, images: Tensor) -> Tensor:
        """A (B, C, H, W) batch in the network's memory layout: channels-last (NHWC) when ``channels_last``.

        Done in the step rather than in ``on_after_batch_transfer``, which a LightningDataModule's own hook shadows.
        """
        if self.hparams.get("channels_last", False) and images.dim() == 4:
            return images.contiguous(memory_format=torch.channels_last)
        return images

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:  # noqa: D102
        states = checkpoint.get("brain_mtl_rng_states")
        if states is not None:
            set_rng_states(states)

    def setup(self, stage: str) -> None:
        """Prepare the network for a stage.

        Sets the memory layout (``channels_last``), compiles it (``compile``), and loads the pretrained encoder
        weights when a fit starts from scratch (a resumed fit restores its own).
        """
        if self.hparams.get("channels_last", False):
            self.model.to(memory_format=torch.channels_last)
        if self.hparams.get("compile", False) and not self._compiled:
            self.model.compile()  # in place: the weights' names do not change
            self._compiled = True
        weights = self.hparams.encoder_weights
        if stage == "fit" and weights and self.trainer.ckpt_path is None:
            if self.model.is_reference:
                raise ValueError("model.encoder_weights needs a timm encoder (model.encoder), not 'reference'")
            self.model.encoder.load_weights(weights)

    def configure_callbacks(self) -> list[Any]:
        """The encoder-freezing callback when ``freeze_encoder_epochs`` > 0."""
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
        optimizer = joint_adamw(self, self.encoder_parameters(), hp.lr, hp.weight_decay, hp.encoder_lr_multiplier)
        if hp.lr_schedule == "constant" and hp.warmup_epochs <= 0:
            return optimizer
        scheduler = warmup_then_schedule(
            optimizer, self.trainer, hp.warmup_epochs, cosine=hp.lr_schedule == "cosine",
            clock=hp.get("lr_schedule_clock", "steps"),  # hparams saved before the option have none
        )  # fmt: skip
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store the random number generators' states in the checkpoint.

        A resumed fit draws the same shuffles, augmentations and dropout masks as an
        uninterrupted one (exact for resumption at an epoch boundary with ``num_workers=0``; worker processes
        reseed from the restored state).
        """
        checkpoint["brain_mtl_rng_states"] = rng_states()
