"""Fixtures for the inference tests: tiny checkpoints written directly, and one briefly trained through the CLI."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import NamedTuple

import pytest
import torch

from tests.conftest import requested_torch_threads
from tests.fixtures import write_checkpoint

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "configs" / "quickstart.yaml"


@contextlib.contextmanager
def one_torch_thread():
    # The CI machine has 2 cores shared with other jobs; two intra-op threads that wait on each other made a
    # training step 15x slower there than one thread. `--torch-threads N` (tests/conftest.py) replaces the 1.
    previous = torch.get_num_threads()
    torch.set_num_threads(requested_torch_threads() or 1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread_per_module():
    # Module scope, so the setting is restored before other test folders run.
    with one_torch_thread():
        yield


def randomize_batchnorm(model: torch.nn.Module, seed: int = 0) -> None:
    """Give every BatchNorm non-trivial running statistics and affine weights, as a trained network has.

    Fresh BatchNorms are identities in eval mode (mean 0, var 1), which would hide an export that mishandles them.
    """
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(n, generator=generator) * 0.1)


def write_lightning_checkpoint(path: Path, image_size: int = 32, keep_aspect: bool = False, seed: int = 0) -> Path:
    """A checkpoint with the keys Lightning writes (module weights and hparams, the datamodule's hparams)."""
    return write_checkpoint(
        path,
        seed=seed,
        edit=lambda module: randomize_batchnorm(module, seed),
        datamodule_hparams={"image_size": image_size, "keep_aspect": keep_aspect},
    )


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory) -> Path:
    """Untrained 4-channel, depth-2 network; 32 px input, no letterbox."""
    return write_lightning_checkpoint(tmp_path_factory.mktemp("tiny") / "tiny.ckpt")


class Trained(NamedTuple):
    ckpt: Path
    data_root: Path
    run_dir: Path


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> Trained:
    """A small network trained briefly (8 epochs, 200 synthetic images at 64 px, about half a minute) via the CLI."""
    from brain_mtl.commands.main import main

    run_dir = tmp_path_factory.mktemp("trained")
    data_root = run_dir / "data"
    with one_torch_thread():  # session fixtures are set up before the module-scoped thread setting
        status = _fit(main, data_root, run_dir)
    assert status == 0
    checkpoints = sorted(run_dir.rglob("*.ckpt"))
    assert checkpoints, f"fit wrote no checkpoint under {run_dir}"
    return Trained(checkpoints[-1], data_root, run_dir)


QUIET_TRAINER = (
    "--trainer.logger",
    "false",
    "--trainer.callbacks",
    "[]",
    "--trainer.enable_progress_bar",
    "false",
    "--trainer.enable_model_summary",
    "false",
)
"""Command-line arguments that keep a test fit from logging, drawing or printing."""

TIMM_ENCODER = "mobilenetv3_large_100"
"""The timm encoder of the ``timm_trained`` checkpoint: the smallest tested family (3.9 M parameters with the head)."""


@pytest.fixture(scope="session")
def timm_trained(tmp_path_factory) -> Trained:
    """A UNet on a timm encoder (random init: nothing is downloaded) fitted for 2 steps via the CLI at 64 px.

    Only the checkpoint's form matters here (hyperparameters with ``input_normalization``, the encoder's keys), not
    what it learned; it takes a few seconds.
    """
    pytest.importorskip("timm")
    from brain_mtl.commands.main import main

    run_dir = tmp_path_factory.mktemp("timm_trained")
    data_root = run_dir / "data"
    with one_torch_thread():
        status = main(
            [
                "fit",
                "--config",
                str(QUICKSTART),
                "--data.root",
                "null",
                "--data.synthetic_root",
                str(data_root),
                "--data.synthetic_train",
                "24",
                "--data.synthetic_test",
                "8",
                "--data.image_size",
                "64",
                "--data.batch_size",
                "8",
                "--data.num_workers",
                "0",
                "--model.encoder",
                TIMM_ENCODER,
                "--model.classifier_hidden",
                "16",
                "--trainer.max_epochs",
                "1",
                "--trainer.limit_train_batches",
                "2",
                "--trainer.limit_val_batches",
                "1",
                "--trainer.precision",
                "32-true",
                "--trainer.default_root_dir",
                str(run_dir),
                *QUIET_TRAINER,
            ]
        )
    assert status == 0
    checkpoints = sorted(run_dir.rglob("*.ckpt"))
    assert checkpoints, f"fit wrote no checkpoint under {run_dir}"
    return Trained(checkpoints[-1], data_root, run_dir)


def _fit(main, data_root: Path, run_dir: Path) -> int:
    return main(
        [
            "fit",
            "--config",
            str(QUICKSTART),
            "--data.root",
            "null",
            "--data.synthetic_root",
            str(data_root),
            "--data.synthetic_train",
            "200",
            "--data.synthetic_test",
            "40",
            "--data.image_size",
            "64",
            "--data.num_workers",
            "0",
            "--data.cache_images",
            "true",
            "--model.base_channels",
            "8",
            "--trainer.max_epochs",
            "8",
            "--trainer.default_root_dir",
            str(run_dir),
            *QUIET_TRAINER,
        ]
    )
