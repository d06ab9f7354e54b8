"""Fixtures of the data tests: a small synthetic dataset and a hand-made BRISC-layout folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.data.data_helpers import N_TEST, N_TRAIN, TreeBuilder


@pytest.fixture(scope="session")
def synthetic_root(tiny_datasets) -> Path:
    """A synthetic BRISC-layout dataset (N_TRAIN train / N_TEST test), shared read-only by the tests."""
    return tiny_datasets(N_TRAIN, N_TEST, seed=3)


@pytest.fixture
def tree(tmp_path: Path) -> TreeBuilder:
    """A valid hand-made dataset (3 images per class in train and test) to break in a test."""
    return TreeBuilder(tmp_path / "data").valid()
