"""The one error type the data code raises for a bad dataset folder or file."""

from __future__ import annotations


class DatasetError(ValueError):
    """A dataset folder or file is unusable.

    The message lists every problem found, one per line, each naming the file and saying how to fix it, so
    that a user can repair a whole folder in one pass instead of one error per run.
    """
