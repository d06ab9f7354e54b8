"""Command line: ``python -m brain_mtl {fit,validate,test,predict}`` (LightningCLI) and the library's own commands.

The other commands (``synth``, ``check-data``, ``predict-images``, ``export``) are registered in
:data:`brain_mtl.commands.COMMANDS` and use the same flag spelling (``--ckpt_path``, ``--no_overlay``).

Research code that subclasses :class:`~brain_mtl.task.module.BrainTumorModule` keeps the whole command line with
``main(model_class=MyModule)``.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Sequence

from brain_mtl import __version__
from brain_mtl.commands import COMMANDS, command_main
from brain_mtl.commands.allocator import keep_freed_memory
from brain_mtl.errors import (
    CheckpointError,
    ConfigError,
    DatasetError,
    DivergenceError,
    OutputFolderError,
    WriteError,
)

LIGHTNING_SUBCOMMANDS = {
    "fit": "train (and validate) a model",
    "validate": "run one validation epoch",
    "test": "evaluate on the test split and write the evaluation report",
    "predict": "predict the datamodule's prediction set through a prediction writer",
}


def _usage() -> str:
    lines = [f"brain_mtl {__version__}: joint brain-tumour segmentation and classification.", "", "usage:"]
    lines += [f"  python -m brain_mtl {name:<15} {text}" for name, text in LIGHTNING_SUBCOMMANDS.items()]
    lines += [f"  python -m brain_mtl {name:<15} {text}" for name, (_, text) in COMMANDS.items()]
    lines += [
        "",
        "Each subcommand has its own --help, e.g. `python -m brain_mtl fit --help`.",
        "Quickstart: python -m brain_mtl fit --config configs/quickstart.yaml",
    ]
    return "\n".join(lines)


def _run_lightning(args: list[str] | None, model_class: type | None) -> None:
    # Deferred to here: the library's own commands, --help and --version do not load Lightning.
    from brain_mtl.commands.lightning import BrainTumorCLI
    from brain_mtl.data import BrainTumorDataModule
    from brain_mtl.task.module import BrainTumorModule

    BrainTumorCLI(
        model_class or BrainTumorModule,
        BrainTumorDataModule,
        args=args,
        seed_everything_default=42,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"description": "brain_mtl: " + _usage().splitlines()[0]},
    )


def _check_config_files(argv: Sequence[str]) -> None:
    """Every ``--config`` file must be text: jsonargparse would stop on a binary one with a bare UnicodeDecodeError."""
    paths = [b for a, b in itertools.pairwise(argv) if a == "--config"]
    paths += [a.split("=", 1)[1] for a in argv if a.startswith("--config=")]
    for path in paths:
        try:
            with open(path, "rb") as handle:
                handle.read().decode("utf-8")
        except UnicodeDecodeError as error:
            raise ConfigError(
                f"--config {path} is not a text (YAML) file ({error.reason} at byte {error.start}): give the YAML "
                "config, e.g. configs/quickstart.yaml."
            ) from error
        except OSError:
            continue  # jsonargparse says that the file does not exist, in its own words


def main(args: Sequence[str] | None = None, model_class: type | None = None) -> int:
    """Run the command line.

    Like ``python -m brain_mtl``, it first tunes this process's memory allocator for training
    (:func:`brain_mtl.commands.allocator.keep_freed_memory`, for the rest of the process; ``BRAIN_MTL_ALLOCATOR=system``
    turns that off).

    Args:
        args: arguments without the program name; ``None`` reads ``sys.argv``.
        model_class: a subclass of BrainTumorModule to train instead of it (research code).

    Returns:
        The exit status (0 on success).
    """
    argv = list(sys.argv[1:] if args is None else args)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        print(f"brain_mtl {__version__}")
        return 0
    # Before the first large allocation: a CPU training step then reuses freed buffers instead of faulting them
    # back in from the kernel every step (docs/benchmarks.md); BRAIN_MTL_ALLOCATOR=system turns it off.
    keep_freed_memory()
    try:
        if argv[0] in COMMANDS:
            return int(command_main(argv[0])(argv[1:]) or 0)
        _check_config_files(argv[1:])
        # LightningCLI reads sys.argv itself when these are the process's own arguments (it warns when given both;
        # `cv` sets sys.argv to each fold's command, which DDP's child processes then run again).
        _run_lightning(None if args is None or argv == sys.argv[1:] else argv, model_class)
    except ConfigError as error:  # a usage error, like a value jsonargparse refuses (exit status 2)
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (DatasetError, CheckpointError, DivergenceError, OutputFolderError, WriteError) as error:
        # The one error path of every command: the message names the file or step and says the fix; a traceback
        # would only bury it.
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0
