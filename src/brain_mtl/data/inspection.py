"""Reading one file the way the index does: content hash, format, truncation, decodability, size, mask area.

:func:`inspect_file` never raises: what it finds is a :class:`~brain_mtl.data.records.FileCheck`;
:func:`inspect_files` reads many files on threads, and :func:`report_file` turns a check into
:class:`~brain_mtl.data.records.Problem` records.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from brain_mtl.data.duplicates import file_digest
from brain_mtl.data.errors import DatasetError
from brain_mtl.data.headers import HeaderError, check_declared_size
from brain_mtl.data.io import (
    EXTENSION_FORMATS,
    FORMAT_EXTENSIONS,
    FORMAT_NAMES,
    capture_native_stderr,
    decode_checked,
    decode_unchanged,
    describe_start,
    is_truncated,
    mask_from_array,
    release_captured,
    sniff_format,
)
from brain_mtl.data.near_duplicates import perceptual_hash
from brain_mtl.data.records import FileCheck, Problem

__all__ = ["inspect_file", "inspect_files", "report_file"]

_REPLACE_FIX = "replace it with a good copy (copy or download it again, or re-export it), or remove it."
_MESSAGE_LIMIT = 300
# OpenCV's log lines carry a timestamp ("[ WARN:0@0.022] ..."): dropped when comparing two captures of one message.
_LOG_STAMP = re.compile(r"^\[\s*(\w+):[^\]]*\]\s*")


def _one_line(messages: str) -> str:
    text = "; ".join(line.strip() for line in messages.splitlines() if line.strip())
    return text if len(text) <= _MESSAGE_LIMIT else text[: _MESSAGE_LIMIT - 3] + "..."


def inspect_file(path: Path, is_mask: bool = False, decode: bool = True, strict: bool = True) -> FileCheck:
    """Read one file: content hash, format, truncation, decodability, size, and (masks) the tumour fraction.

    The file is judged by its content, not its name: bytes with no image signature are ``not_an_image``; a JPEG
    named ``.png`` loads (OpenCV reads content) and gets a ``wrong_extension`` note; bytes after the end marker
    are accepted. With ``strict``, the decoder's warnings on stderr are captured for this file
    (:func:`brain_mtl.data.io.decode_checked`): a JPEG that decodes with libjpeg's "Corrupt JPEG data" warning is
    ``corrupt`` (OpenCV returns it with the undecodable part flat grey).

    Args:
        path: the file.
        is_mask: also compute the mask's tumour fraction.
        decode: decode the pixels (False: hash, format and truncation only).
        strict: capture the decoder's warnings. Only False inside a capture that the caller holds (decoding
            threads, see :func:`inspect_files`), where a capture per file would wait forever on the capture lock.

    Never raises: a problem is returned in ``error_kind``/``error``/``fix``, warnings in ``notes``.
    """
    try:
        data = path.read_bytes()
    except OSError as error:
        return FileCheck(
            error_kind="unreadable",
            error=f"unreadable: the file cannot be opened ({error.strerror or error}).",
            fix="check its permissions, or replace or remove it.",
        )
    digest = file_digest(data)
    if not data:
        return FileCheck(
            digest=digest, error_kind="unreadable", error="unreadable: the file is empty (0 bytes).", fix=_REPLACE_FIX
        )
    fmt = sniff_format(data)
    if fmt is None:
        return FileCheck(
            digest=digest,
            error_kind="not_an_image",
            error=f"not an image: the content is not JPEG, PNG or any image format although the name ends in "
            f"{path.suffix or '(no extension)'} ({describe_start(data)}).",
            fix="replace it with the real image (a JPEG starts with the bytes ff d8 ff, a PNG with 89 50 4e 47), "
            "or remove it.",
        )
    name = FORMAT_NAMES[fmt]
    notes: list[tuple[str, str, str]] = []
    named = EXTENSION_FORMATS.get(path.suffix.lower())
    if named is not None and named != fmt:
        notes.append(
            (
                "wrong_extension",
                f"wrong extension: it is a {name}, named {path.suffix}. It loads (files are decoded by their "
                "content, not their name), but other tools may refuse it.",
                f"rename it to {path.stem}{FORMAT_EXTENSIONS[fmt]}.",
            )
        )
    if is_truncated(data):
        return FileCheck(
            digest=digest,
            format=fmt,
            error_kind="truncated",
            error=f"truncated: the {name} data ends before its end marker (an interrupted copy or download; "
            "decoded, the missing part would come out grey).",
            fix="copy or download it again, or remove it.",
            notes=tuple(notes),
        )
    if not decode:
        return FileCheck(digest=digest, format=fmt, notes=tuple(notes))
    try:
        check_declared_size(data, None)
    except HeaderError as error:
        return FileCheck(
            digest=digest, format=fmt, error_kind="unsupported", error=error.reason, fix=error.fix, notes=tuple(notes)
        )
    if strict:
        array, messages = decode_checked(data)
    else:
        array, messages = _decode_or_none(data, path), ""
    if array is None:
        said = f" (the decoder said: {_one_line(messages)!r})" if messages else ""
        return FileCheck(
            digest=digest,
            format=fmt,
            error_kind="corrupt",
            error=f"corrupt: the {name} data cannot be decoded{said}.",
            fix=_REPLACE_FIX,
            notes=tuple(notes),
            decoder_messages=messages,
        )
    if messages and fmt == "jpeg":
        return FileCheck(
            digest=digest,
            format=fmt,
            error_kind="corrupt",
            error=f"corrupt: the JPEG decoder reported {_one_line(messages)!r}: part of the image is missing "
            "(decoded as flat grey) or garbled.",
            fix=_REPLACE_FIX,
            notes=tuple(notes),
            decoder_messages=messages,
        )
    if messages:
        notes.append(
            (
                "decoder_warning",
                f"the {name} decoder warned: {_one_line(messages)!r}; the image was decoded.",
                "check that it looks right; re-save it (e.g. with OpenCV or Pillow) if it does not.",
            )
        )
    channels = 1 if array.ndim == 2 else array.shape[2]
    mask_area = float(mask_from_array(array).mean()) if is_mask else None
    phash = None if is_mask else perceptual_hash(array)
    return FileCheck(
        digest=digest,
        height=array.shape[0],
        width=array.shape[1],
        channels=channels,
        dtype=str(array.dtype),
        mask_area=mask_area,
        phash=phash,
        format=fmt,
        notes=tuple(notes),
        decoder_messages=messages,
    )


def _decode_or_none(data: bytes, path: Path) -> np.ndarray | None:
    try:
        return decode_unchanged(data, path)
    except DatasetError:
        return None


def inspect_files(jobs: Sequence[tuple[Path, bool]], decode: bool, threads: int | None) -> list[FileCheck]:
    """Inspect many files (see :func:`inspect_file`), on threads when there are enough of them.

    Args:
        jobs: ``(path, is_mask)`` per file.
        decode: decode the pixels (False: hash, format and truncation only).
        threads: reader threads (None: up to 8, from the CPU count).

    Returns:
        One :class:`~brain_mtl.data.records.FileCheck` per job, in order.
    """
    if threads is None:
        threads = min(8, os.cpu_count() or 1)
    if threads <= 1 or len(jobs) < 8:
        return [inspect_file(p, m, decode) for p, m in jobs]

    # OpenCV decoding and hashing release the GIL: threads use every core without pickling arrays around.
    def run() -> list[FileCheck]:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            return list(pool.map(lambda job: inspect_file(job[0], job[1], decode, strict=False), jobs, chunksize=16))

    if not decode:
        return run()
    # libjpeg prints "Corrupt JPEG data: ..." to stderr without a file name. Stderr is one per process, so it is
    # captured once around all the decoding threads; in the rare case that anything was printed, the files are
    # decoded again one by one, each with its own capture, to tell which file said what.
    with capture_native_stderr() as captured:
        checks = run()
    if not captured.text.strip():
        return checks
    checks = [inspect_file(p, m, decode, strict=True) for p, m in jobs]
    attributed = {_LOG_STAMP.sub("", line).strip() for c in checks for line in c.decoder_messages.splitlines()}
    unattributed = [
        line
        for line in captured.text.splitlines(keepends=True)
        if line.strip() and _LOG_STAMP.sub("", line).strip() not in attributed
    ]
    release_captured("".join(unattributed))  # other code's output, printed meanwhile: give it back
    return checks


def report_file(check: FileCheck, path: Path, also_remove: str, problems: list[Problem]) -> bool:
    """Turn one file's check into problems (its error, its warnings).

    Args:
        check: from :func:`inspect_file`.
        path: the file.
        also_remove: appended to a fix that ends in "or remove it" (e.g. " and its image" for a mask).
        problems: where the problems found are appended.

    Returns:
        True when the file is unusable.
    """
    for kind, message, fix in check.notes:
        problems.append(Problem(kind, path, message, fix, "warning"))
    if not check.error:
        return False
    fix = check.fix or _REPLACE_FIX
    if also_remove and fix.endswith("or remove it."):
        fix = fix[: -len(".")] + also_remove + "."
    problems.append(Problem(check.error_kind or "unreadable", path, check.error, fix))
    return True
