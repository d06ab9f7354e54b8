"""The task's optimizer and learning-rate schedule: AdamW with an encoder parameter group, warm-up, cosine decay."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["joint_adamw", "lr_factor", "warmup_then_schedule"]


def joint_adamw(
    module: nn.Module,
    encoder: Sequence[nn.Parameter],
    lr: float,
    weight_decay: float,
    encoder_lr_multiplier: float = 1.0,
) -> torch.optim.AdamW:
    """AdamW with two parameter groups: ``decoder_and_heads`` at ``lr``, ``encoder`` at ``lr * encoder_lr_multiplier``.

    The encoder is its own group, frozen or not: AdamW skips parameters without gradients (no step, no weight decay),
    and a schedule covers the group from the start. On CUDA the fused kernel is used (one launch for all parameters).
    """
    encoder_ids = {id(p) for p in encoder}
    rest = [p for p in module.parameters() if id(p) not in encoder_ids]
    groups = [
        {"params": rest, "lr": lr, "name": "decoder_and_heads"},
        {"params": list(encoder), "lr": lr * encoder_lr_multiplier, "name": "encoder"},
    ]
    fused = bool(encoder) and all(p.is_cuda for group in groups for p in group["params"])
    return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay, fused=fused or None)


def warmup_then_schedule(
    optimizer: torch.optim.Optimizer, trainer: Any, warmup_epochs: float, cosine: bool
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step schedule over the whole fit: linear warm-up for ``warmup_epochs``, then constant or cosine to 0."""
    total_steps = max(1, int(trainer.estimated_stepping_batches))
    epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else 1
    warmup_steps = min(total_steps, round(warmup_epochs * total_steps / epochs))
    factor = functools.partial(lr_factor, warmup_steps=warmup_steps, total_steps=total_steps, cosine=cosine)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def lr_factor(step: int, warmup_steps: int, total_steps: int, cosine: bool) -> float:
    """Learning-rate factor at ``step``: linear warm-up from 0, then constant or a cosine decay to 0."""
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    if not cosine:
        return 1.0
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
