"""Files the library writes: atomically, one run per folder, strict JSON, and CSV cells no spreadsheet runs.

Atomic writes: a file the library writes is either the complete new one or the previous one, never half.

:func:`atomic_path` hands out a temporary file in the target's own folder; when the block ends without an error it
is flushed to disk and renamed over the target (``os.replace``, atomic on POSIX and Windows), else removed. A write
that fails half-way (a full disk, ``ulimit -f``, a kill) leaves the previous file untouched. Each process writes
its own temporary name, so two processes writing one target never rename each other's file away. The checkpoints
(:class:`brain_mtl.callbacks.RunCheckpoint`) follow the same scheme with Lightning's writer.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from brain_mtl.errors import RunLockedError, WriteError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks here; RunLock is then a no-op
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "RunLock",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "csv_cell",
    "fsync_path",
    "json_dumps",
    "json_ready",
]

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def fsync_path(path: str | os.PathLike) -> None:
    """Flush a file (or a folder's entries, where the OS allows it) to disk."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) if os.path.isdir(path) else os.O_RDONLY
    try:
        fd = os.open(path, flags)
    except OSError:
        return  # e.g. folders cannot be opened on Windows
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def _describe(error: OSError) -> str:
    return error.strerror or str(error)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """A temporary path to write instead of ``target``; renamed over it when the block succeeds.

    Args:
        target: the file to write (its folder must exist).

    Yields:
        The temporary path (same folder, hidden name, unique to this process).

    Raises:
        WriteError: the temporary file cannot be created, written or renamed (read-only folder, a file in place
            of the folder, a full disk); the target is then unchanged and the temporary file removed.
    """
    target = Path(target)
    if target.is_dir():
        raise WriteError(f"{target}: is a folder; give a file name to write to.")
    temporary = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        yield temporary
        fsync_path(temporary)
        os.replace(temporary, target)
    except OSError as error:
        with contextlib.suppress(OSError):
            temporary.unlink()
        if isinstance(error, WriteError):
            raise
        raise WriteError(
            f"cannot write {target}: {_describe(error)}. Choose a writable folder with enough free space."
        ) from error
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    fsync_path(target.parent)


def atomic_write_bytes(target: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``target`` atomically (see :func:`atomic_path`)."""
    with atomic_path(target) as temporary:
        temporary.write_bytes(data)


def atomic_write_text(target: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``target`` atomically (see :func:`atomic_path`)."""
    with atomic_path(target) as temporary:
        temporary.write_text(text, encoding=encoding)


class RunLock:
    """An exclusive lock on a run folder, held by the one process that writes into it.

    An advisory ``flock`` on a lock file named after the folder's resolved path, in the system's temporary folder (so
    the run folder itself holds only the run's files): the kernel releases it when the process ends, however it ends
    (``kill -9`` included), so a crashed run never leaves a stale lock. The file holds the holder's process id, host,
    start time and command line, which a second process names in its error; it is removed when the lock is released
    (a killed holder leaves it, unlocked, and the next run takes it over). Processes on one machine see each other's
    locks; two machines writing one network folder do not. A no-op where ``fcntl`` does not exist (Windows).

    Args:
        folder: the run folder (created when missing).
    """

    _held: dict[str, RunLock] = {}  # noqa: RUF012  (the locks this process holds, by path)

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        digest = hashlib.sha256(str(self.folder.resolve()).encode()).hexdigest()[:32]
        self.path = Path(tempfile.gettempdir()) / f"brain_mtl-run-{digest}.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise :class:`~brain_mtl.errors.RunLockedError` naming the process that holds it.

        A lock this process still holds on the folder (a run in it that ended without releasing it, e.g. one that
        raised) is taken over: a process never locks itself out.
        """
        if fcntl is None or self._fd is not None:
            return
        key = str(self.path.resolve())
        previous = RunLock._held.get(key)
        if previous is not None and previous._fd is not None:
            self._fd, previous._fd = previous._fd, None
            RunLock._held[key] = self
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            holder = os.read(fd, 4096).decode("utf-8", errors="replace").strip() or "a process that did not say"
            os.close(fd)
            raise RunLockedError(
                f"{self.folder} is in use by another run ({holder}): two runs writing one checkpoint folder "
                "would overwrite each other's files. Wait for it to end, or give this run its own folder "
                "(trainer.default_root_dir and the checkpoint callback's dirpath)."
            ) from error
        os.ftruncate(fd, 0)
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}, since {started}: {' '.join(sys.argv)}".encode())
        self._fd = fd
        RunLock._held[key] = self

    def release(self) -> None:
        """Give the lock up and remove its file (removed while still held, so the folder is left as it was)."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()
        with contextlib.suppress(OSError):
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None
        RunLock._held.pop(str(self.path.resolve()), None)


def csv_cell(value: object) -> object:
    """A CSV cell that a spreadsheet shows as text: a string starting with ``= + - @``, tab or CR gets a ``'`` first.

    Spreadsheet programs run such cells as formulas (CSV injection; a file named ``=HYPERLINK(...).png`` would
    become a live formula in ``predictions.csv``). Numbers and other values are returned as they are; the JSON
    files keep the names unchanged.
    """
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


# Strict JSON for every file and printout the library writes: no ``NaN`` or ``Infinity`` tokens.
def json_ready(value: Any) -> Any:
    """``value`` made ready for strict JSON, for values that may legitimately be missing.

    NaN and infinity become None (``null``), NumPy scalars and arrays Python values, paths and dict keys strings.
    """
    if isinstance(value, dict):
        return {str(key): json_ready(item) for key, item in value.items()}
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, list | tuple):
        return [json_ready(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def json_dumps(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` of :func:`json_ready` ``(value)`` with ``allow_nan=False`` (keyword arguments pass through)."""
    return json.dumps(json_ready(value), allow_nan=False, **kwargs)
