"""``python -m brain_mtl calibrate``: one temperature for the class head, fitted on held-out images."""

from __future__ import annotations

import datetime as _dt
import inspect
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
import yaml

from brain_mtl.checkpoints import read_checkpoint
from brain_mtl.commands.base import UsageError, checkpoint_errors, run_command
from brain_mtl.data.datamodule import BrainTumorDataModule
from brain_mtl.evaluation.calibration import calibrated_probs, fit_temperature
from brain_mtl.evaluation.metrics import expected_calibration_error, negative_log_likelihood
from brain_mtl.files import atomic_write_text
from brain_mtl.inference.checkpoint import is_ensemble_file, load_checkpoint
from brain_mtl.models import EnsembleNet
from brain_mtl.models.tta import parse_tta, views

__all__ = ["calibrate", "calibrate_main", "calibrated_path"]

ECE_BINS = 15
"""The report's ECE bins."""


def calibrated_path(ckpt_path: str | os.PathLike) -> Path:
    """Where ``calibrate`` writes by default: ``<name>-calibrated.yaml`` beside the checkpoint or ensemble file."""
    path = Path(ckpt_path)
    return path.with_name(f"{path.stem}-calibrated.yaml")


def _data_settings(first_member: str, content: dict[str, Any], root: str | None, split: str) -> dict[str, Any]:
    """The datamodule settings of the first member's training run (same split, same fold), ``root`` replaced."""
    accepted = inspect.signature(BrainTumorDataModule).parameters  # not Lightning's own entries (_instantiator)
    settings = {k: v for k, v in (content.get("datamodule_hyper_parameters") or {}).items() if k in accepted}
    if not settings and root is None:
        raise UsageError(
            f"{first_member} records no dataset (a state-dict file): give the folder to calibrate on with --root"
        )
    if root is not None:
        settings["root"] = root
    settings["test_split"] = split
    return settings


def calibrate(
    ckpt_path: str,
    output: str | None = None,
    root: str | None = None,
    split: Literal["val", "test"] = "val",
    tta: Literal["none", "flip", "d4"] | None = None,
    batch_size: int = 32,
    num_workers: int = 0,
) -> int:
    """Fit one temperature for the class head on held-out images and write a calibrated model file.

    The class logits of every image of the split are divided by the temperature that minimises their negative
    log-likelihood (LBFGS on its logarithm); the classes predicted, and so the accuracy, do not change. The file
    written is an ensemble file (``ensemble: {members: [...], temperature: T}``, one member for a checkpoint)
    that test, validate, predict, predict-images, export and the app accept wherever a checkpoint goes; they apply
    the temperature, and the test report shows ECE and NLL before and after it. Fit it on images the network did
    not train on: the run's validation split (the default, carved as in training, the same fold for a
    cross-validation member), or the test split of another folder (--root, --split test) kept apart for it.

    Args:
        ckpt_path: Lightning checkpoint (.ckpt) or ensemble file (.yaml); an ensemble's temperature is fitted for
            its averaged probabilities (a temperature the file already has is replaced).
        output: the calibrated file to write (default: <name>-calibrated.yaml beside --ckpt_path).
        root: dataset folder (default: the one the first member was trained on).
        split: val: the validation split carved as in the first member's training; test: the folder's test split.
        tta: test-time augmentation of the logits fitted (default: the first member's setting); use the one you
            test with.
        batch_size: images per forward pass.
        num_workers: data loader worker processes.

    Returns:
        The exit status.
    """
    out = Path(output) if output else calibrated_path(ckpt_path)
    if out.suffix.lower() not in (".yaml", ".yml"):
        raise UsageError(f"--output {out}: a calibrated model file is YAML: name it <something>.yaml")
    with checkpoint_errors(ckpt_path):
        loaded = load_checkpoint(ckpt_path)
    members = [str(m) for m in loaded.members] if is_ensemble_file(ckpt_path) else [str(ckpt_path)]
    if is_ensemble_file(ckpt_path) and Path(ckpt_path).resolve() == out.resolve():
        raise UsageError(f"--output {out} is the file given as --ckpt_path: write the calibrated file beside it")
    model = loaded.model if isinstance(loaded.model, EnsembleNet) else EnsembleNet([loaded.model])
    model.temperature = 1.0  # fitted on the uncalibrated probabilities
    first = read_checkpoint(members[0])  # its run's settings: the data split and the TTA
    tta = parse_tta(tta or (first.get("hyper_parameters") or {}).get("tta", "none"))

    datamodule = BrainTumorDataModule(**{**_data_settings(members[0], first, root, split), "batch_size": batch_size})
    datamodule.num_workers = num_workers
    datamodule.setup("test")
    per_view = views(tta)  # the temperature applies to each view's class output, then the views are averaged
    log_probs, labels = [], []
    with torch.inference_mode():
        for batch in datamodule.evaluation_dataloader(split):
            images = batch["image"]
            log_probs.append(torch.stack([model(view.apply(images)).class_logits.float() for view in per_view]))
            labels.append(batch["label"])
    z, y = torch.cat(log_probs, dim=1), torch.cat(labels)
    temperature = fit_temperature(z, y)

    figures = {}
    for name, t in (("before", 1.0), ("after", temperature)):
        probs = calibrated_probs(z, t)
        figures[name] = {
            "nll": negative_log_likelihood(probs, y.numpy()),
            "ece": expected_calibration_error(probs, y.numpy(), ECE_BINS),
            "accuracy": float((probs.argmax(1) == y.numpy()).mean()),
        }
    data_root = str(Path(datamodule.dataset_root).absolute())
    content = {
        "ensemble": {
            "members": [os.path.relpath(Path(m).absolute(), out.absolute().parent) for m in members],
            "temperature": round(temperature, 6),
        },
        "calibration": {
            "fitted_on": {"root": data_root, "split": split, "images": len(y), "tta": tta},
            "before": figures["before"],
            "after": figures["after"],
            "created_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
    }
    header = (
        f"# Written by `python -m brain_mtl calibrate --ckpt_path {ckpt_path}`: the class head's temperature, fitted\n"
        f"# on {len(y)} images of the {split} split of {data_root}. Use it wherever a checkpoint goes.\n"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, header + yaml.safe_dump(content, sort_keys=False))
    b, a = figures["before"], figures["after"]
    print(
        f"calibrate: temperature {temperature:.3f} fitted on {len(y)} images ({split} split of {data_root}); "
        f"NLL {b['nll']:.4f} -> {a['nll']:.4f}, ECE {b['ece']:.4f} -> {a['ece']:.4f}, accuracy {a['accuracy']:.4f} "
        f"(unchanged); wrote {out}"
    )
    return 0


def calibrate_main(argv: Sequence[str] | None = None) -> int:
    """``python -m brain_mtl calibrate``: :func:`calibrate` from the command line."""
    return run_command(calibrate, argv, "brain_mtl calibrate")
