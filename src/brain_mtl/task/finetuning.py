"""Freeze a pretrained encoder for the first epochs, then train it (Lightning's BaseFinetuning)."""

from __future__ import annotations

from typing import Any

from lightning.pytorch import LightningModule
from lightning.pytorch.callbacks import BaseFinetuning
from torch.optim import Optimizer

__all__ = ["EncoderFreeze"]


class EncoderFreeze(BaseFinetuning):
    """Keep ``pl_module.model.encoder`` frozen (BatchNorm statistics included) for ``epochs`` epochs.

    The task adds it itself when ``model.freeze_encoder_epochs`` > 0, so a YAML key is all a user writes. At the
    start of epoch ``epochs`` the encoder becomes trainable again. Its parameters sit in the optimizer's
    ``encoder`` group all along (AdamW skips parameters without gradients), so the learning-rate schedule and
    ``encoder_lr_multiplier`` apply to it from the first epoch it trains.

    Args:
        epochs: epochs to keep the encoder frozen.
    """

    def __init__(self, epochs: int) -> None:
        super().__init__()
        if epochs < 1:
            raise ValueError(f"EncoderFreeze: epochs must be >= 1, got {epochs}")
        self.epochs = epochs

    def freeze_before_training(self, pl_module: LightningModule) -> None:  # noqa: D102
        self.freeze(pl_module.model.encoder, train_bn=False)

    def finetune_function(self, pl_module: LightningModule, epoch: int, optimizer: Optimizer) -> None:  # noqa: D102
        if epoch >= self.epochs:  # also on the first epoch of a fit resumed after the unfreezing
            self.make_trainable(pl_module.model.encoder)

    def state_dict(self) -> dict[str, Any]:
        """Nothing to restore: no parameter group is ever added (BaseFinetuning would reset the groups' rates)."""
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # noqa: D102
        pass
