"""Fixtures for running the command line in-process on a tiny generated dataset."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from lightning.pytorch import Callback

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "configs" / "quickstart.yaml"


@pytest.fixture(scope="session")
def tiny_root(tiny_datasets) -> Path:
    """A synthetic BRISC-layout dataset: 48 train and 12 test images (small files)."""
    return tiny_datasets(48, 12, seed=0)


class StopAfterEpochs(Callback):
    """Stop a fit after ``epochs`` epochs as if it had been interrupted (the schedule still spans max_epochs)."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch + 1 >= self.epochs:
            trainer.should_stop = True


def tiny_config(
    root: Path,
    out: Path,
    source: Path = QUICKSTART,
    epochs: int = 1,
    overrides: dict[str, Any] | None = None,
    stop_after: int | None = None,
) -> Path:
    """Copy a shipped config with tiny sizes and every output under ``out``; return the new file.

    The structure (callbacks, logger, checkpointing) stays the shipped one, so the tests exercise it.
    """
    config = yaml.safe_load(source.read_text())
    trainer = config["trainer"]
    trainer.update(
        max_epochs=epochs,
        accelerator="cpu",
        precision="32-true",
        default_root_dir=str(out),
        enable_progress_bar=False,
        log_every_n_steps=1,
        num_sanity_val_steps=0,
    )
    trainer["logger"]["init_args"]["save_dir"] = str(out)
    for callback in trainer["callbacks"]:
        args = callback.setdefault("init_args", {})
        if callback["class_path"].endswith("Checkpoint"):
            args["dirpath"] = str(out / "checkpoints")
        if callback["class_path"].endswith("PredictionGrid"):
            args.update(every_n_epochs=1, num_images=4)
    if stop_after is not None:
        trainer["callbacks"].append({"class_path": f"{__name__}.StopAfterEpochs", "init_args": {"epochs": stop_after}})
    config["model"].update(base_channels=4, depth=2, classifier_hidden=8)
    config["data"] = {
        "root": str(root),
        "image_size": 64,
        "batch_size": 8,
        "num_workers": 0,
        "cache_images": False,
    }
    for dotted, value in (overrides or {}).items():
        node = config
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    path = out / "config.yaml"
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def make_config(tiny_root: Path) -> Callable[..., Path]:
    """``make_config(out, epochs=1, overrides=None, source=QUICKSTART)`` -> path of a tiny config."""

    def factory(out: Path, **kwargs: Any) -> Path:
        return tiny_config(tiny_root, out, **kwargs)

    return factory


def scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series in the TensorBoard event files under ``log_dir``: tag -> [(step, value)]."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    series: dict[str, list[tuple[int, float]]] = {}
    for event_file in sorted(log_dir.rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(event_file), size_guidance={"scalars": 0, "images": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            series.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return series


def image_tags(log_dir: Path) -> set[str]:
    """Tags of the images written to TensorBoard under ``log_dir``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags: set[str] = set()
    for event_file in log_dir.rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(event_file), size_guidance={"images": 0})
        acc.Reload()
        tags |= set(acc.Tags()["images"])
    return tags


def state_dict_of(checkpoint: Path) -> dict[str, torch.Tensor]:
    return torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
