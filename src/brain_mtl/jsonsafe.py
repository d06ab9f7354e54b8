"""Strict JSON for every file and printout the library writes: no ``NaN`` or ``Infinity`` tokens."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["dumps", "json_ready"]


def json_ready(value: Any) -> Any:
    """``value`` made ready for strict JSON, for values that may legitimately be missing.

    NaN and infinity become None (``null``), NumPy scalars and arrays Python values, paths and dict keys strings.
    """
    if isinstance(value, dict):
        return {str(key): json_ready(item) for key, item in value.items()}
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, list | tuple):
        return [json_ready(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` of :func:`json_ready` ``(value)`` with ``allow_nan=False`` (keyword arguments pass through)."""
    return json.dumps(json_ready(value), allow_nan=False, **kwargs)
