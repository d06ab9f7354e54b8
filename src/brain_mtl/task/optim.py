"""The task's optimizer and learning-rate schedule: AdamW with an encoder parameter group, warm-up, cosine decay."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from lightning.pytorch.callbacks import Timer
from torch import nn

from brain_mtl.errors import ConfigError

__all__ = ["joint_adamw", "lr_factor", "timer_fraction", "warmup_then_schedule"]


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
    optimizer: torch.optim.Optimizer, trainer: Any, warmup_epochs: float, cosine: bool, clock: str = "steps"
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step schedule over the whole fit: linear warm-up for ``warmup_epochs``, then constant or cosine to 0.

    ``clock="time"``: the cosine also follows the fraction of ``trainer.max_time`` used so far and reaches 0 at
    whichever comes first, the last step or the time limit, so a wall-clock budget always ends in a finished decay
    on a machine of any speed (``max_time`` alone would cut the schedule off wherever the time ran out).
    """
    estimated = trainer.estimated_stepping_batches
    if not math.isfinite(estimated):  # max_epochs -1 and no max_steps: the schedule has no length to span
        raise ConfigError(
            "the learning-rate schedule spans the fit, but trainer.max_epochs is -1 and trainer.max_steps unset: give "
            "either one (with model.lr_schedule_clock: time, an upper bound that the time limit ends first)"
        )
    total_steps = max(1, int(estimated))
    if clock == "time" or not (trainer.max_epochs and trainer.max_epochs > 0):
        # an epoch's optimizer steps: max_steps / max_epochs is no epoch when either is only an upper bound
        per_epoch = trainer.num_training_batches / max(1, trainer.accumulate_grad_batches)
        warmup_steps = round(warmup_epochs * per_epoch) if math.isfinite(per_epoch) else 0
    else:
        warmup_steps = round(warmup_epochs * total_steps / trainer.max_epochs)
    warmup_steps = min(total_steps, warmup_steps)
    elapsed = None
    if clock == "time" and cosine:
        if trainer.world_size > 1:  # each process would read its own clock and the replicas' rates would drift
            raise ConfigError(
                "model.lr_schedule_clock: time runs on one device only (each process has its own clock): use "
                "lr_schedule_clock: steps with trainer.max_steps for a multi-device fit"
            )
        # a partial keeps the clock out of the scheduler's state_dict (LambdaLR saves a callable object's __dict__)
        elapsed = functools.partial(timer_fraction, find_timer(trainer))
    factor = functools.partial(
        lr_factor, warmup_steps=warmup_steps, total_steps=total_steps, cosine=cosine, elapsed=elapsed
    )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def find_timer(trainer: Any) -> Timer:
    """The trainer's ``Timer`` callback (Lightning adds one for ``trainer.max_time``)."""
    for callback in trainer.callbacks:
        if isinstance(callback, Timer) and callback.time_remaining() is not None:
            return callback
    raise ConfigError(
        "model.lr_schedule_clock: time ends the learning-rate schedule at the fit's time limit, but the trainer has "
        "none: set trainer.max_time (e.g. --trainer.max_time 00:01:00:00) or use lr_schedule_clock: steps"
    )


def timer_fraction(timer: Timer) -> float:
    """The fraction of the timer's limit used by training so far (validation inside the fit counted; resumes too)."""
    used = timer.time_elapsed("train")
    return used / max(used + timer.time_remaining("train"), 1e-9)


def lr_factor(
    step: int, warmup_steps: int, total_steps: int, cosine: bool, elapsed: Callable[[], float] | None = None
) -> float:
    """Learning-rate factor at ``step``: linear warm-up from 0, then constant or a cosine decay to 0.

    With ``elapsed`` (the fraction of a time limit used), the decay's progress is the larger of the step fraction
    and the time fraction.
    """
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    if not cosine:
        return 1.0
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    if elapsed is not None:
        progress = max(progress, elapsed())
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
