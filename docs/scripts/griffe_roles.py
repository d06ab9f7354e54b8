"""Griffe extension: show the docstrings' Sphinx roles (``:class:`~brain_mtl.x.Name```) as code, not as raw text.

The docstrings are Google style, with a few reStructuredText roles that ``help()`` and IDEs show as they are.
mkdocstrings would print them literally (``:class:`...```); here each becomes a code span with the name as
written (the last component when it starts with ``~``). Named in mkdocs.yml under the Python handler's
``extensions``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import griffe


def _generator() -> Any:
    name = "brain_mtl_docs_gen_reference"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parent / "gen_reference.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


plain_roles = _generator().plain_roles


class SphinxRolesAsCode(griffe.Extension):
    """Rewrite the roles of every docstring as it is loaded."""

    def on_instance(self, *, obj: Any, **kwargs: Any) -> None:
        """Rewrite the docstring of one object."""
        if obj.docstring is not None:
            obj.docstring.value = plain_roles(obj.docstring.value)
