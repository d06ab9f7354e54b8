"""How a ``brain_mtl`` command outside Lightning's loop is built: a typed, documented function is its parser.

Each command is a plain function whose parameters are its options and whose Google-style docstring is its
``--help`` (the summary and body describe the command, ``Args:`` describes each option). :func:`run_command`
turns it into a jsonargparse parser with the flag style of the Lightning subcommands, one rule per type:

- every option is ``--name`` with the parameter's name, underscores included (``--ckpt_path``,
  ``--class_name_map``), as LightningCLI spells ``--trainer.max_epochs``;
- ``bool``: ``--name`` or ``--name true`` sets it, ``--no_name`` or ``--name false`` clears it;
- ``list[T]``: one or more values after the flag (``--input a.png b.png scans/``);
- ``Literal[...]``: one of the listed values;
- anything else: jsonargparse's typing (``int | None`` takes ``null``, ...); a parameter without a default is
  required;
- ``--config FILE`` reads options from a YAML file, as for the Lightning subcommands.

A command returns its exit status. Errors have one path each: a bad option value exits with status 2 (from the
parser, or a :class:`UsageError` raised by the command, printed as one ``error:`` line); a dataset or checkpoint
that cannot be used raises :class:`~brain_mtl.data.errors.DatasetError` or :class:`~brain_mtl.errors.CheckpointError`
(see :func:`checkpoint_errors`), which :func:`brain_mtl.commands.main.main` prints as one ``error:`` line with status 1,
for every command alike.
"""

from __future__ import annotations

import collections.abc
import inspect
import os
import sys
import typing
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from jsonargparse import ActionConfigFile, ActionYesNo, ArgumentParser

from brain_mtl.errors import CheckpointError

__all__ = ["UsageError", "checkpoint_errors", "command_parser", "run_command"]


class UsageError(ValueError):
    """Options that cannot work together or a value out of range: one ``error:`` line on stderr, exit status 2.

    The message names the option and says what would work.
    """


def _without_none(annotation: Any) -> Any:
    """``T`` for ``T | None`` (``Optional[T]``), else the annotation itself."""
    args = typing.get_args(annotation)
    if type(None) in args:
        rest = [arg for arg in args if arg is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return annotation


def _argument_options(annotation: Any, parameter: inspect.Parameter) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if parameter.default is inspect.Parameter.empty:
        options["required"] = True
    else:
        options["default"] = parameter.default
    base = _without_none(annotation)
    origin = typing.get_origin(base)
    if base is bool:
        options.update(action=ActionYesNo, nargs="?")
    elif origin in (list, collections.abc.Sequence):
        (item,) = typing.get_args(base)
        options.update(nargs="+", type=item)
    else:
        options["type"] = annotation
    return options


def command_parser(
    function: Callable[..., int], prog: str, *, overrides: dict[str, dict[str, Any]] | None = None
) -> ArgumentParser:
    """The parser of a command function: one option per parameter, help from its docstring.

    Args:
        function: the command; every parameter typed, documented under ``Args:`` and passed by keyword.
        prog: the program name in the usage line, e.g. ``"brain_mtl synth"``.
        overrides: extra ``add_argument`` keywords per parameter name, e.g. ``{"tta": {"nargs": "?",
            "const": "flip"}}`` for an option that may be given without a value.

    Returns:
        A jsonargparse parser; a parse error prints the usage and exits with status 2.
    """
    import docstring_parser

    doc = docstring_parser.parse(inspect.getdoc(function) or "")
    helps = {param.arg_name: " ".join((param.description or "").split()) for param in doc.params}
    description = "\n\n".join(part for part in (doc.short_description, doc.long_description) if part)
    parser = ArgumentParser(prog=prog, description=description)
    parser.add_argument("--config", action=ActionConfigFile, help="read options from a YAML file")
    hints = typing.get_type_hints(function)
    for name, parameter in inspect.signature(function).parameters.items():
        options = _argument_options(hints[name], parameter)
        options["help"] = helps.get(name, "")
        options.update((overrides or {}).get(name, {}))
        parser.add_argument(f"--{name}", **options)
    return parser


def run_command(
    function: Callable[..., int],
    argv: Sequence[str] | None,
    prog: str,
    *,
    overrides: dict[str, dict[str, Any]] | None = None,
) -> int:
    """Parse ``argv`` with :func:`command_parser` and call the command.

    Args:
        function: the command function.
        argv: arguments without the program and command names; ``None`` reads ``sys.argv[1:]``.
        prog: the program name in the usage line.
        overrides: see :func:`command_parser`.

    Returns:
        The command's exit status; 2 after a :class:`UsageError` (printed as one ``error:`` line).

    Raises:
        SystemExit: ``--help`` (status 0) or options that do not parse (status 2, after the usage).
    """
    parser = command_parser(function, prog, overrides=overrides)
    config = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    kwargs = {name: config[name] for name in inspect.signature(function).parameters}
    try:
        return int(function(**kwargs) or 0)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


@contextmanager
def checkpoint_errors(path: str | os.PathLike) -> Iterator[None]:
    """Report any failure to load the checkpoint ``path`` inside the block as a :class:`CheckpointError`.

    Loading fails with several types (a missing file, a foreign file, weights that do not fit the network); the
    commands let them all reach :func:`brain_mtl.commands.main.main` as one type, which prints its message after
    ``error:`` (exit status 1), as for ``fit --ckpt_path``.

    Args:
        path: the checkpoint being loaded (named in the message).

    Raises:
        brain_mtl.errors.CheckpointError: the block raised OSError, ValueError, RuntimeError or TypeError.
    """
    try:
        yield
    except CheckpointError:
        raise
    except (OSError, ValueError, RuntimeError, TypeError) as error:
        detail = str(error) if str(path) in str(error) else f"{path}: {error}"
        raise CheckpointError(f"cannot load the checkpoint {detail}") from error
