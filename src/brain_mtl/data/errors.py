"""The data code's error type: :class:`brain_mtl.errors.DatasetError`, importable from here too."""

from brain_mtl.errors import DatasetError

__all__ = ["DatasetError"]
