"""Griffe extensions for the API reference, named in mkdocs.yml under the Python handler's ``extensions``.

- ``SphinxRolesAsCode``: the docstrings are Google style, with a few reStructuredText roles that ``help()`` and
  IDEs show as they are. mkdocstrings would print them literally (``:class:`...```); here each becomes a code span
  with the name as written (the last component when it starts with ``~``).
- ``HideUndocumentedInstanceAttributes``: ``self.x = ...`` in ``__init__`` without a docstring is an
  implementation detail (the layers of a network, cached settings); documented ones, class attributes and
  dataclass fields stay.
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


class HideUndocumentedInstanceAttributes(griffe.Extension):
    """Leave out instance attributes that have no docstring."""

    def on_class_members(self, *, cls: Any, **kwargs: Any) -> None:
        """Drop the class's undocumented ``self.x`` attributes."""
        for name, member in list(cls.members.items()):
            if member.is_alias or not member.is_attribute:
                continue
            # Only ``self.x = ...``: a dataclass field is also a class attribute, and documented by the class.
            if member.labels == {"instance-attribute"} and not member.docstring:
                cls.del_member(name)
