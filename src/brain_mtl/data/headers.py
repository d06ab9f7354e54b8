"""An image's size read from its container, before any pixel is decoded.

Every reader of the library (the data checks, training, ``predict-images``, the web app) decodes through
:func:`brain_mtl.data.io.decode_unchanged` or :func:`~brain_mtl.data.io.decode_checked`, and both first call
:func:`check_declared_size`: the width, height and page count are parsed from the file's own header for every format
the library accepts (JPEG, PNG, BMP, TIFF, WebP, JPEG 2000, PGM/PPM), and a file whose size cannot be told that way,
that declares more pixels than allowed, or that holds several pages is refused with a message naming it. A file
that is none of these formats (say, a Radiance HDR named ``.png``) is refused too, so OpenCV never decodes a format
nobody measured. Only the header is read: a damaged chunk elsewhere (a wrong CRC) cannot hide the declared size.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

__all__ = [
    "FORMAT_NAMES",
    "MAX_FILE_PIXELS",
    "DeclaredSize",
    "HeaderError",
    "check_declared_size",
    "declared_size",
    "describe_start",
    "sniff_format",
]

FORMAT_NAMES: dict[str, str] = {
    "jpeg": "JPEG",
    "png": "PNG",
    "bmp": "BMP",
    "tiff": "TIFF",
    "webp": "WebP",
    "jpeg2000": "JPEG 2000",
    "pnm": "PGM/PPM",
}
"""Readable names of the formats :func:`sniff_format` returns."""


MAX_FILE_PIXELS = 200_000_000
"""Largest image (width x height) any file reader decodes: 14,142 x 14,142, far above any MRI slice (BRISC's
largest side is 1,427 px); the web app has its own, lower cap."""

_MAX_TIFF_PAGES = 4096  # pages counted at most (a loop of IFD offsets ends here)


class HeaderError(ValueError):
    """The header cannot be measured, or declares what the readers refuse.

    Attributes:
        kind: ``"not_an_image"``, ``"unmeasurable"``, ``"pages"``, ``"too_large"`` or ``"empty"``.
        reason: what is wrong, without the file's name.
        fix: what to do about it.
        size: what the header declares (None for ``not_an_image`` and ``unmeasurable``).
    """

    def __init__(self, kind: str, name: object, reason: str, fix: str, size: DeclaredSize | None = None) -> None:
        self.kind, self.reason, self.fix, self.size = kind, reason, fix, size
        super().__init__(f"{name}: {reason} {fix}" if name is not None else f"{reason} {fix}")


@dataclass(frozen=True)
class DeclaredSize:
    """What an image file's header declares.

    Attributes:
        format: the format (as :func:`brain_mtl.data.io.sniff_format` names it).
        width: width in pixels.
        height: height in pixels.
        pages: images in the file (TIFF pages; 1 for the other formats).
    """

    format: str
    width: int
    height: int
    pages: int = 1


def sniff_format(data: bytes) -> str | None:
    """Tell an image format from the first bytes of a file (its signature), whatever the file is named.

    Returns:
        ``"jpeg"`` (FF D8 FF), ``"png"`` (89 50 4E 47 0D 0A 1A 0A), ``"bmp"``, ``"tiff"``, ``"webp"``,
        ``"jpeg2000"``, ``"pnm"``, or None when the bytes start like none of them (not an image).
    """
    head = data[:16]
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"BM") and len(data) >= 26:
        return "bmp"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "webp"
    if head.startswith(b"\x00\x00\x00\x0cjP  \r\n\x87\n") or head.startswith(b"\xff\x4f\xff\x51"):
        return "jpeg2000"
    if len(head) >= 3 and head[0:1] == b"P" and head[1:2] in b"1234567" and head[2:3] in b" \t\r\n#":
        return "pnm"
    return None


def describe_start(data: bytes, count: int = 8) -> str:
    """The first bytes of a file, as text and hex, for error messages ("it starts with '<html><b' = 3c 68 ...")."""
    head = data[:count]
    text = head.decode("latin-1")
    printable = sum(32 <= b < 127 or b in (9, 10, 13) for b in head)
    guess = ""
    if head and printable == len(head):
        lowered = data[:256].lstrip().lower()
        if lowered.startswith((b"<!doctype html", b"<html", b"<?xml", b"<svg")):
            guess = "; it looks like an HTML or XML page, e.g. an error page saved under an image name"
        else:
            guess = "; it looks like text"
    return f"it starts with {text!r} = {head.hex(' ')}{guess}"


def _jpeg(data: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:  # extraneous bytes before a marker: libjpeg skips them (with a warning), so do we
            i = data.find(b"\xff", i)
            if i < 0:
                return None
            continue
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # a start of frame
            if i + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return width, height
        if marker in (0xD9, 0xDA) or length < 2:  # end of image, or the scan starts before any frame header
            return None
        i += 2 + length
    return None


def _png(data: bytes) -> tuple[int, int] | None:
    if len(data) < 24 or data[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", data[16:24])


def _bmp(data: bytes) -> tuple[int, int] | None:
    if len(data) < 26:
        return None
    (header,) = struct.unpack("<I", data[14:18])
    if header == 12:  # OS/2 BITMAPCOREHEADER
        return struct.unpack("<HH", data[18:22])
    width, height = struct.unpack("<ii", data[18:26])
    return abs(width), abs(height)  # a negative height is a top-down bitmap


def _tiff(data: bytes) -> tuple[int, int, int] | None:
    order = "<" if data[:2] == b"II" else ">"
    (version,) = struct.unpack(order + "H", data[2:4])
    if version == 42:
        offset_format, count_format, entry_size, value_at = "I", "H", 12, 8
        (offset,) = struct.unpack(order + "I", data[4:8])
    elif version == 43 and len(data) >= 16:  # BigTIFF
        offset_format, count_format, entry_size, value_at = "Q", "Q", 20, 12
        (offset,) = struct.unpack(order + "Q", data[8:16])
    else:
        return None
    count_size = struct.calcsize(count_format)
    size = None
    pages = 0
    seen: set[int] = set()
    while offset and offset not in seen and pages < _MAX_TIFF_PAGES:
        seen.add(offset)
        if offset + count_size > len(data):
            break
        (entries,) = struct.unpack(order + count_format, data[offset : offset + count_size])
        start = offset + count_size
        end = start + entries * entry_size
        if end + struct.calcsize(offset_format) > len(data):
            break
        pages += 1
        if size is None:
            tags: dict[int, int] = {}
            for k in range(entries):
                entry = data[start + k * entry_size : start + (k + 1) * entry_size]
                tag, kind = struct.unpack(order + "HH", entry[:4])
                if tag in (256, 257):
                    if kind == 3:  # SHORT
                        (tags[tag],) = struct.unpack(order + "H", entry[value_at : value_at + 2])
                    elif kind in (4, 16):  # LONG, LONG8
                        fmt = "I" if kind == 4 else "Q"
                        (tags[tag],) = struct.unpack(order + fmt, entry[value_at : value_at + struct.calcsize(fmt)])
            if 256 not in tags or 257 not in tags:
                return None
            size = (tags[256], tags[257])
        (offset,) = struct.unpack(order + offset_format, data[end : end + struct.calcsize(offset_format)])
    if size is None:
        return None
    return size[0], size[1], pages


def _webp(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        (bits,) = struct.unpack("<I", data[21:25])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= 30:
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height
    return None


def _jpeg2000(data: bytes) -> tuple[int, int] | None:
    if data.startswith(b"\xff\x4f\xff\x51"):  # a bare codestream: the SIZ segment follows at once
        if len(data) < 24:
            return None
        xsiz, ysiz, x0, y0 = struct.unpack(">IIII", data[8:24])
        return xsiz - x0, ysiz - y0
    at = data.find(b"ihdr", 0, 4096)  # the JP2 file's image header box
    if at < 0 or at + 12 > len(data):
        return None
    height, width = struct.unpack(">II", data[at + 4 : at + 12])
    return width, height


_PNM = re.compile(rb"P[1-7](?:\s+|#[^\n]*\n)+(\d+)(?:\s+|#[^\n]*\n)+(\d+)")


def _pnm(data: bytes) -> tuple[int, int] | None:
    match = _PNM.match(data[:1024])
    return (int(match.group(1)), int(match.group(2))) if match else None


def declared_size(data: bytes) -> DeclaredSize | None:
    """The format, size and page count an image file's header declares, without decoding a pixel.

    Args:
        data: the file's bytes.

    Returns:
        The declared size, or None when the bytes are none of the accepted formats or their header cannot be read.
    """
    fmt = sniff_format(data)
    try:
        if fmt == "tiff":
            measured = _tiff(data)
            return DeclaredSize(fmt, *measured) if measured else None
        parse = {"jpeg": _jpeg, "png": _png, "bmp": _bmp, "webp": _webp, "jpeg2000": _jpeg2000, "pnm": _pnm}.get(
            fmt or ""
        )
        size = parse(data) if parse else None
    except struct.error:  # a header cut short
        return None
    return DeclaredSize(fmt, *size) if size and fmt else None


def check_declared_size(data: bytes, name: object, max_pixels: int = MAX_FILE_PIXELS) -> DeclaredSize:
    """Refuse a file before decoding it unless its header declares one image of at most ``max_pixels``.

    Args:
        data: the file's bytes (non-empty).
        name: the file's name or path, for the messages (None: the message does not name it).
        max_pixels: the largest accepted width x height.

    Returns:
        What the header declares.

    Raises:
        HeaderError: the content is no accepted image format, its size cannot be read from its header, it holds
            several pages, or it declares more than ``max_pixels``; the message names the file and the fix.
    """
    fmt = sniff_format(data)
    if fmt is None:
        raise HeaderError(
            "not_an_image",
            name,
            "not an image brain_mtl reads: the content is not JPEG, PNG, BMP, TIFF, WebP, JPEG 2000 or PGM/PPM "
            f"({describe_start(data)}).",
            "Convert it to PNG or JPEG, or remove it.",
        )
    size = declared_size(data)
    if size is None:
        raise HeaderError(
            "unmeasurable",
            name,
            f"its {FORMAT_NAMES[fmt]} header does not say the image's size (damaged, or cut short), so it is not "
            "decoded.",
            "Re-save it (e.g. as PNG) or replace it.",
        )
    if size.pages > 1:
        raise HeaderError(
            "pages",
            name,
            f"a TIFF with {size.pages} pages; brain_mtl reads one image per file and would see the first page only.",
            "Save each page as its own file (e.g. with `tiffsplit`).",
            size,
        )
    if size.width * size.height > max_pixels:
        raise HeaderError(
            "too_large",
            name,
            f"its header declares {size.width} x {size.height} pixels, more than the {max_pixels / 1e6:g} "
            "megapixels this reader decodes.",
            "Downscale it.",
            size,
        )
    if size.width == 0 or size.height == 0:
        raise HeaderError(
            "empty", name, f"its header declares an empty image ({size.width} x {size.height}).", "Replace it.", size
        )
    return size
