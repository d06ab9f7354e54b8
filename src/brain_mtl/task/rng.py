"""The random number generators' states, stored in checkpoints.

A resumed fit then draws what an uninterrupted one would: shuffles, augmentations, dropout masks.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

__all__ = ["rng_states", "set_rng_states"]


def rng_states() -> dict[str, Any]:
    """torch's, NumPy's and Python's global random states, as plain types and tensors (``weights_only``-loadable)."""
    # Plain types and tensors only, so that checkpoints stay loadable with torch.load(weights_only=True).
    name, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002 (the global state is what we restore)
    return {
        "torch": torch.get_rng_state(),
        "numpy": (str(name), torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)),
        "python": random.getstate(),
    }


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore the states that :func:`rng_states` captured."""
    torch.set_rng_state(states["torch"])
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))  # noqa: NPY002
    random.setstate(states["python"])
