"""Fixtures for the app tests: checkpoints with known outputs, written in milliseconds."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.app.helpers import NO_TUMOR_LOGITS, write_fixed_checkpoint


@pytest.fixture(scope="session")
def glioma_ckpt(tmp_path_factory) -> Path:
    """Every pixel tumour (p = 0.953), glioma with probabilities 64.4 / 23.7 / 8.7 / 3.2 %."""
    return write_fixed_checkpoint(tmp_path_factory.mktemp("app_ckpt") / "glioma.ckpt")


@pytest.fixture(scope="session")
def no_tumor_ckpt(tmp_path_factory) -> Path:
    """Every pixel tumour, but the class head says no_tumor: the gate empties the mask."""
    return write_fixed_checkpoint(tmp_path_factory.mktemp("app_ckpt") / "no_tumor.ckpt", NO_TUMOR_LOGITS)


@pytest.fixture(scope="session")
def glioma_onnx(glioma_ckpt, tmp_path_factory) -> Path:
    """The glioma checkpoint exported to ONNX by the command line (checked against PyTorch by export itself)."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from brain_mtl.commands.main import main

    path = tmp_path_factory.mktemp("app_onnx") / "glioma.onnx"
    assert main(["export", "--ckpt_path", str(glioma_ckpt), "--output", str(path)]) == 0
    return path
