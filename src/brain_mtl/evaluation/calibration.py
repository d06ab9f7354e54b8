"""Temperature scaling of the class head: fit one temperature, and undo it to compare before and after.

Guo et al., "On Calibration of Modern Neural Networks" (ICML 2017): dividing the class logits by one temperature
``T`` fitted on held-out images (minimising the negative log-likelihood) keeps every prediction's ranking, so the
accuracy, and makes the probabilities honest. ``T > 1`` softens an over-confident head.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

__all__ = ["calibrated_probs", "fit_temperature", "undo_temperature"]

_EPS = 1e-12


def _calibrated_nll(z: Tensor, y: Tensor, temperature: Tensor | float) -> Tensor:
    """NLL of the mean over views (dim 0) of ``softmax(z / T)``."""
    probs = torch.softmax(z / temperature, dim=-1).mean(dim=0)
    return F.nll_loss(torch.log(probs.clamp_min(_EPS)), y)


def fit_temperature(log_probs: Tensor, labels: Tensor, max_iter: int = 100) -> float:
    """The temperature ``T`` that minimises the NLL of ``softmax(log_probs / T)`` (LBFGS on ``log T``).

    Args:
        log_probs: (N, C) class logits or log-probabilities (the same thing up to a constant per row), or
            (V, N, C) for V test-time-augmentation views, whose calibrated probabilities are averaged (as test does:
            the temperature applies to each view, then the views are averaged).
        labels: (N,) true class indices.
        max_iter: LBFGS iterations.

    Returns:
        ``T > 0`` (1 when there is nothing to fit).

    Raises:
        ValueError: no images, or logits that are not finite.
    """
    z = log_probs.detach().double().clamp_min(math.log(_EPS))
    z = z[None] if z.dim() == 2 else z
    y = labels.detach().long()
    if z.shape[1] == 0:
        raise ValueError("calibration needs at least one image")
    if not bool(torch.isfinite(z).all()):
        raise ValueError("calibration needs finite class logits")
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = _calibrated_nll(z, y, log_t.exp())
        loss.backward()
        return loss

    optimizer.step(closure)
    temperature = float(log_t.detach().exp())
    before = float(_calibrated_nll(z, y, 1.0))
    after = float(_calibrated_nll(z, y, temperature))
    return temperature if math.isfinite(temperature) and after <= before else 1.0


def calibrated_probs(log_probs: Tensor, temperature: float) -> np.ndarray:
    """(N, C) probabilities of (N, C) or (V, N, C) logits at ``temperature``, averaged over the views."""
    z = log_probs.detach().double()
    z = z[None] if z.dim() == 2 else z
    return torch.softmax(z / temperature, dim=-1).mean(dim=0).numpy()


def undo_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """The probabilities before temperature scaling: ``softmax(T * log p)`` of calibrated (N, C) probabilities."""
    log_p = np.log(np.clip(np.asarray(probs, dtype=np.float64), _EPS, None)) * float(temperature)
    log_p -= log_p.max(axis=1, keepdims=True)
    e = np.exp(log_p)
    return e / e.sum(axis=1, keepdims=True)
