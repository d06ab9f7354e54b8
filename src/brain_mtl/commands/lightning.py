"""``BrainTumorCLI``: LightningCLI that checks a checkpoint before any subcommand uses it.

Kept apart from :mod:`brain_mtl.commands.main` so that ``--help`` and the library's own tools do not import Lightning.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.utilities import rank_zero_only

from brain_mtl.callbacks.checkpoint import DEFAULT_DIRNAME, RunCheckpoint
from brain_mtl.checkpoints import is_remote, read_checkpoint
from brain_mtl.errors import CheckpointError, ConfigError
from brain_mtl.inference.checkpoint import ensemble_members, is_ensemble_file, load_checkpoint

__all__ = ["DATA_HPARAMS_FROM_CHECKPOINT", "BrainTumorCLI", "reconcile_with_checkpoint"]

DATA_HPARAMS_FROM_CHECKPOINT = ("image_size", "keep_aspect")
"""Data settings that a checkpoint's model was trained with, and that evaluating it must use."""


@rank_zero_only
def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [_plain(v) for v in value]
    return value


def _same_kind(a: Any, b: Any) -> bool:
    """Whether a checkpoint's value can stand for a config's: the same plain type (an int is not a bool)."""
    for kind in (bool, int, float, str):
        if isinstance(a, kind):
            if kind is float:  # an int stands for a float
                return isinstance(b, (int, float)) and not isinstance(b, bool)
            return isinstance(b, kind) and (kind is bool or not isinstance(b, bool))
    return True


def reconcile_with_checkpoint(config: Any, checkpoint: Mapping[str, Any], architecture: Sequence[str]) -> list[str]:
    """Make a subcommand's config agree with the checkpoint it loads; list every difference and its outcome.

    The model's architecture (``architecture``, e.g. ``base_channels``) and the data's image size and letterboxing
    are taken from the checkpoint: its weights only fit that network, and it was trained at that size. Other
    model settings (learning rate, threshold...) keep the config's value; the difference is still reported.

    Args:
        config: the subcommand's namespace (``config.model``, ``config.data``); changed in place.
        checkpoint: the checkpoint's content (``hyper_parameters``, ``datamodule_hyper_parameters``).
        architecture: names of the model's hyperparameters that shape its weights.

    Returns:
        One line per difference, ``model.base_channels: checkpoint 8, config 16 -> 8 (...)``.
    """
    notes: list[str] = []
    model_saved = checkpoint.get("hyper_parameters") or {}
    data_saved = checkpoint.get("datamodule_hyper_parameters") or {}
    sections = (
        ("model", model_saved, set(architecture), "its weights need it"),
        ("data", data_saved, set(DATA_HPARAMS_FROM_CHECKPOINT), "the model was trained so"),
    )
    for section, saved, from_checkpoint, why in sections:
        group = config.get(section)
        if group is None:
            continue
        for key, value in saved.items():
            if key.startswith("_") or key not in group:
                continue
            current = group[key]
            if _plain(current) == _plain(value):
                continue
            if key in from_checkpoint:
                if current is not None and not _same_kind(current, value):
                    raise CheckpointError(
                        f"the checkpoint's {section}.{key} is {value!r} ({type(value).__name__}), where the network "
                        f"takes a {type(current).__name__} (the config's is {current!r}): the file was not written by "
                        "this version of brain_mtl, or was edited. Use a checkpoint brain_mtl wrote."
                    )
                group[key] = value
                outcome = f"using {value!r} ({why})"
            else:
                outcome = f"using the config's {current!r}"
            notes.append(f"  {section}.{key}: checkpoint {value!r}, config {current!r} -> {outcome}")
    return notes


def _check_image_size(config: Any) -> None:
    """``data.image_size`` must be a multiple of the reference network's output stride, ``2**model.depth``.

    (A timm encoder's stride depends on the model; its network checks the input itself.)
    """
    model, data = config.get("model"), config.get("data")
    if model is None or data is None or model.get("encoder", "reference") not in (None, "reference"):
        return
    size, depth = data.get("image_size"), model.get("depth", 4)
    if not isinstance(size, int) or not isinstance(depth, int) or not 1 <= depth <= 10 or size < 1:
        return
    stride = 2**depth
    if size % stride:
        below, above = size // stride * stride, (size // stride + 1) * stride
        raise ConfigError(
            f"data.image_size {size} is not a multiple of {stride} (2**model.depth, the network's output stride): "
            f"use {max(below, stride)} or {above}."
        )


def _checkpoint_dirs(config: Any) -> list[Path]:
    """Folders of the config's checkpoint callbacks that name one (where ``--ckpt_path last`` looks)."""
    folders = []
    for callback in config.get("trainer", {}).get("callbacks") or []:
        class_path = callback.get("class_path") if hasattr(callback, "get") else None
        if not class_path:
            continue
        module_name, _, name = class_path.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module_name), name)
        except (ImportError, AttributeError):
            continue
        dirpath = (callback.get("init_args") or {}).get("dirpath")
        if isinstance(cls, type) and issubclass(cls, RunCheckpoint) and not dirpath:
            dirpath = Path(config.get("trainer", {}).get("default_root_dir") or ".") / DEFAULT_DIRNAME
        if isinstance(cls, type) and issubclass(cls, ModelCheckpoint) and dirpath:
            folders.append(Path(dirpath))
    return folders


def _follow_root_dir(config: Any) -> None:
    """A ``RunTensorBoardLogger`` with ``save_dir`` left out logs under ``trainer.default_root_dir``."""
    trainer = config.get("trainer")
    if trainer is None:
        return
    loggers = trainer.get("logger")
    for logger in loggers if isinstance(loggers, list) else [loggers]:
        if not hasattr(logger, "get") or not str(logger.get("class_path", "")).endswith("RunTensorBoardLogger"):
            continue
        init_args = logger.get("init_args")
        if init_args is not None and init_args.get("save_dir") is None:
            init_args["save_dir"] = str(trainer.get("default_root_dir") or ".")


def cpu_has_amx() -> bool:
    """Whether this CPU has AMX-BF16 tile units (x86, read from /proc/cpuinfo)."""
    try:
        with open("/proc/cpuinfo") as info:
            flags = next((line for line in info if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "amx_bf16" in flags


def default_precision(accelerator: Any = "auto") -> str:
    """The precision a config with ``trainer.precision: null`` gets on this machine.

    ``bf16-mixed`` on CUDA GPUs that support bfloat16 (Ampere or newer), ``16-mixed`` on older ones. On a CPU
    ``bf16-mixed`` only with AMX (:func:`cpu_has_amx`), else ``32-true``: measured with
    ``benchmarks/bench_train.py`` on a Xeon with AVX512-BF16 but no AMX, bf16 autocast trained the reference network
    1.35x slower than float32 (see ``docs/benchmarks.md``). Never fp16 on a CPU.
    """
    import torch

    name = str(accelerator or "auto")
    if name in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed" if cpu_has_amx() else "32-true"


class BrainTumorCLI(LightningCLI):
    """LightningCLI for the joint model, with three guarantees about ``--ckpt_path``.

    - Every checkpoint, a local file or a URL, is read with ``weights_only=True`` unless ``--weights_only false``
      is given: a crafted file cannot run code (Lightning alone unpickles URLs with ``weights_only=False``).
    - A missing, empty, damaged or diverged (non-finite) checkpoint stops with one line naming it, before any
      work; ``--ckpt_path last`` picks the newest *usable* ``last*.ckpt`` and says which files it passed over.
    - A checkpoint whose architecture or image size differs from the config is used with its own values, and
      every difference is printed with the value used.

    And ``trainer.precision: null`` (the shipped configs) becomes :func:`default_precision` for this machine.
    """

    def before_instantiate_classes(self) -> None:
        """Restore the checked ``--ckpt_path``, resolve ``trainer.precision: null``, check linked values.

        ``trainer.precision: null`` becomes this machine's precision (:func:`default_precision`).
        """
        subcommand = self.config.get("subcommand")
        config = self.config[subcommand] if subcommand else self.config
        if getattr(self, "_checked_ckpt_path", None) is not None:
            config["ckpt_path"] = self._checked_ckpt_path
        trainer = config.get("trainer")
        if trainer is not None and trainer.get("precision") is None:
            trainer["precision"] = default_precision(trainer.get("accelerator"))
        _check_image_size(config)
        _follow_root_dir(config)

    def instantiate_classes(self) -> None:
        """Build the model, data and trainer; a value they refuse is one ``error:`` line (exit 2), no traceback.

        The classes check their arguments (``ValueError``) and a checkpoint's saved settings can be of the wrong
        type (``TypeError``); either names the key in its message.
        """
        try:
            super().instantiate_classes()
        except (ValueError, TypeError) as error:
            if isinstance(error, CheckpointError):
                raise
            raise ConfigError(f"the configuration cannot be used: {error}") from error

    def parse_arguments(self, parser: Any, args: Any) -> None:
        """Parse the arguments, then check ``--ckpt_path`` and reconcile the config with the checkpoint.

        LightningCLI's own next step reads an explicit checkpoint file with ``torch.load`` (a bare EOFError on an
        empty file), ignores ``last``, and silently lays every saved model hyperparameter over the config (learning
        rate and threshold included). The checked path is held back from it and restored in
        :meth:`before_instantiate_classes`, so that only this reconciliation applies.
        """
        super().parse_arguments(parser, args)
        self._ensemble: tuple[str, list[Path]] | None = None
        self._checked_ckpt_path = self._check_ckpt_path()
        if self._checked_ckpt_path is not None:
            self.config[self.config["subcommand"]]["ckpt_path"] = None

    def _check_ckpt_path(self) -> str | None:
        """The checked checkpoint file of the subcommand (None: no file to check, Lightning resolves the value)."""
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return None
        config = self.config[subcommand]
        if config.get("weights_only") is None:
            config["weights_only"] = True
        ckpt_path = config.get("ckpt_path")
        if not ckpt_path or str(ckpt_path) in ("best", "hpc", "registry"):
            return None  # Lightning resolves these from the running trainer
        if is_ensemble_file(ckpt_path):
            self._check_ensemble(config, subcommand, str(ckpt_path))
            config["ckpt_path"] = None  # the members' weights are put in the model after it is built
            return None
        if str(ckpt_path) == "last":
            found = self._newest_usable_last(config)
            if found is None and subcommand == "fit":
                return None  # nothing saved yet: Lightning warns and a fit starts from scratch
            if found is None:  # validate, test, predict: an untrained network would be scored, exit 0
                folders = ", ".join(str(folder) for folder in _checkpoint_dirs(config)) or "(no checkpoint folder)"
                raise CheckpointError(
                    f"--ckpt_path last: no last checkpoint in {folders}: there is no trained network to {subcommand}. "
                    "Train one first (python -m brain_mtl fit with the same config), or give a file with "
                    "--ckpt_path PATH."
                )
            path, checkpoint = found
        else:
            path = str(ckpt_path)
            checkpoint = read_checkpoint(path, weights_only=config["weights_only"])
        config["ckpt_path"] = path
        architecture = getattr(self.model_class, "architecture_hparams", ())
        notes = reconcile_with_checkpoint(config, checkpoint, architecture)
        if notes:
            _say(f"brain_mtl: the checkpoint {path} differs from the configuration:\n" + "\n".join(notes))
        return path

    def _check_ensemble(self, config: Any, subcommand: str, path: str) -> None:
        """An ensemble file scores its members' averaged probabilities in validate, test and predict."""
        if subcommand == "fit":
            raise CheckpointError(
                f"--ckpt_path {path} is an ensemble file: a fit resumes one checkpoint. Give one member's file."
            )
        members = ensemble_members(path)
        checkpoints = [read_checkpoint(member, weights_only=config["weights_only"]) for member in members]
        architecture = getattr(self.model_class, "architecture_hparams", ())
        notes = reconcile_with_checkpoint(config, checkpoints[0], architecture)
        if notes:
            _say(
                f"brain_mtl: the ensemble's first member {members[0]} differs from the configuration:\n"
                + "\n".join(notes)
            )
        self._ensemble = (path, members)

    def after_instantiate_classes(self) -> None:
        """Put an ensemble file's members into the model.

        They must agree on classes and input, else one line says which member differs from the first.
        """
        if self._ensemble is None:
            return
        path, _ = self._ensemble
        options = {
            "weights_only": self.config[self.config["subcommand"]]["weights_only"],
            "model_class": self.model_class,
        }
        loaded = load_checkpoint(path, **options)
        self.model.model = loaded.model
        self.model.ensemble = {
            "ensemble": path,
            "ensemble_members": list(loaded.members),
            "class_temperature": loaded.temperature,
        }
        calibrated = f", class head at temperature {loaded.temperature:.3f}" if loaded.temperature != 1.0 else ""
        _say(f"brain_mtl: scoring {path}: the averaged probabilities of {len(loaded.members)} member(s){calibrated}")

    def _newest_usable_last(self, config: Any) -> tuple[str, dict[str, Any]] | None:
        candidates = [
            path
            for folder in _checkpoint_dirs(config)
            if not is_remote(folder) and folder.is_dir()
            for path in folder.glob(f"{ModelCheckpoint.CHECKPOINT_NAME_LAST}*{ModelCheckpoint.FILE_EXTENSION}")
        ]
        passed_over = []
        for path in sorted(candidates, key=lambda p: p.stat().st_mtime, reverse=True):
            try:
                checkpoint = read_checkpoint(path, weights_only=config["weights_only"])
            except CheckpointError as error:
                passed_over.append(str(error))
                continue
            for reason in passed_over:
                _say(f"brain_mtl: --ckpt_path last passed over a newer file: {reason}")
            return str(path), checkpoint
        if passed_over:
            raise CheckpointError(
                "--ckpt_path last: no usable last checkpoint: " + " | ".join(passed_over) + " Give a file with "
                "--ckpt_path PATH, or drop --ckpt_path to start again."
            )
        return None
