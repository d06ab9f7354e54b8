"""Opt-in tests on a real BRISC-layout folder: ``BRAIN_MTL_REAL_DATA=/path/to/brisc2025 python -m pytest -m realdata``.

Every test module here is marked ``realdata`` (``pytestmark``; deselected by default) and skips itself when the
variable names no folder, so that a fresh clone, CI and users without the data are unaffected. The data is never
copied into the repository.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REAL_DATA_ENV = "BRAIN_MTL_REAL_DATA"


@pytest.fixture(scope="session")
def real_root() -> Path:
    """The real BRISC-layout folder named by $BRAIN_MTL_REAL_DATA (the test skips without it)."""
    value = os.environ.get(REAL_DATA_ENV, "").strip()
    if not value:
        pytest.skip(f"{REAL_DATA_ENV} is not set: no real BRISC-layout folder to test on")
    root = Path(value)
    if not (root / "classification_task").is_dir():
        pytest.skip(f"{REAL_DATA_ENV}={value} is not a BRISC-layout folder (no classification_task/ in it)")
    return root


@pytest.fixture(scope="session")
def real_index(real_root: Path):
    """The decoded index of the real folder, built once for the session (about 20 s for BRISC's train split)."""
    from brain_mtl.data import index_dataset

    return index_dataset(real_root)
