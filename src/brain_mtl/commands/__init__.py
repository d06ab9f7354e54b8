"""The ``brain_mtl`` commands outside Lightning's loop, in one place and with one flag style.

:data:`COMMANDS` maps each command name to its ``module:function`` entry point, ``function(argv) -> exit
status``, and a one-line help; :func:`brain_mtl.commands.main.main` dispatches to it, and registering a command is one
line here. The modules are imported only when their command runs, so ``--help`` and the Lightning subcommands do
not pay for them. Commands written as typed, documented functions get their parser from
:func:`brain_mtl.commands.base.run_command` (LightningCLI's flag spelling: ``--ckpt_path``, ``--no_overlay``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence

__all__ = ["COMMANDS", "command_main"]

COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("brain_mtl.commands.data:synth_main", "write a synthetic dataset in the BRISC 2025 layout"),
    "check-data": ("brain_mtl.commands.data:check_data_main", "check a dataset folder and print its summary"),
    "predict-images": (
        "brain_mtl.commands.predict_images:predict_images_main",
        "predict masks and classes for image files or folders",
    ),
    "export": ("brain_mtl.commands.export:export_main", "export a checkpoint to ONNX or a state dict"),
    "cv": ("brain_mtl.commands.cv:cv_main", "k-fold cross-validation: fit every fold, then summarise them"),
    "calibrate": (
        "brain_mtl.commands.calibrate:calibrate_main",
        "fit the class head's temperature on held-out images and write a calibrated model file",
    ),
    "convert": (
        "brain_mtl.commands.convert:convert_main",
        "write another dataset in the BRISC layout (figshare: Cheng et al.'s .mat files; folders: a class tree)",
    ),
    "app": ("brain_mtl.app:app_main", "start the web app (Streamlit) for a checkpoint or an ONNX file"),
}
"""Command name -> (``"module:function"`` taking the arguments after the name and returning the exit status,
one-line help for ``python -m brain_mtl --help``)."""


def command_main(name: str) -> Callable[[Sequence[str]], int]:
    """The entry point of a registered command, imported now.

    Args:
        name: a key of :data:`COMMANDS`, e.g. ``"predict-images"``.

    Returns:
        ``function(argv) -> exit status``.

    Raises:
        KeyError: no such command.
    """
    module_name, function_name = COMMANDS[name][0].split(":")
    return getattr(importlib.import_module(module_name), function_name)
