"""Sizes read from the container before decoding, and the files every reader refuses undecoded."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from brain_mtl.data import index_dataset
from brain_mtl.data import io as data_io
from brain_mtl.data.errors import DatasetError
from brain_mtl.data.headers import HeaderError, check_declared_size, declared_size
from tests.data.data_helpers import TreeBuilder, write_mask


def encoded(ext: str, height: int = 37, width: int = 53, channels: int = 1) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 256, (height, width, channels), dtype=np.uint8).squeeze()
    ok, data = cv2.imencode(ext, pixels)
    if not ok:
        pytest.skip(f"this OpenCV cannot write {ext}")
    return data.tobytes()


@pytest.mark.parametrize(
    ("ext", "fmt"),
    [(".jpg", "jpeg"), (".png", "png"), (".bmp", "bmp"), (".tif", "tiff"), (".webp", "webp"), (".pgm", "pnm"),
     (".jp2", "jpeg2000")],
)  # fmt: skip
def test_every_accepted_format_declares_its_size(ext: str, fmt: str) -> None:
    data = encoded(ext)
    size = declared_size(data)
    assert size is not None, ext
    assert (size.format, size.width, size.height, size.pages) == (fmt, 53, 37, 1)
    assert check_declared_size(data, "x") == size


def test_lossless_webp_and_colour_images_declare_their_size() -> None:
    lossless = cv2.imencode(".webp", np.zeros((20, 30, 3), np.uint8), [cv2.IMWRITE_WEBP_QUALITY, 101])[1].tobytes()
    assert (declared_size(lossless).width, declared_size(lossless).height) == (30, 20)
    colour = declared_size(encoded(".jpg", 64, 48, 3))
    assert (colour.width, colour.height) == (48, 64)
    progressive = cv2.imencode(".jpg", np.zeros((40, 70), np.uint8), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
    assert (declared_size(progressive).width, declared_size(progressive).height) == (70, 40)


def png_header_only(width: int, height: int, bad_text_crc: bool = False, depth: int = 16, colour: int = 6) -> bytes:
    """A PNG that declares width x height (16-bit RGBA by default) and holds no pixels; optionally a broken chunk."""

    def chunk(kind: bytes, payload: bytes, crc_ok: bool = True) -> bytes:
        crc = zlib.crc32(kind + payload) ^ (0 if crc_ok else 1)
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    text = chunk(b"tEXt", b"Comment\x00damaged on purpose", crc_ok=not bad_text_crc)
    end = chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + text + end


def test_a_damaged_chunk_does_not_hide_the_declared_size() -> None:
    # Pillow refuses this file (bad CRC), and the app's old check then let OpenCV decode all 6000 x 6000 pixels.
    data = png_header_only(6000, 6000, bad_text_crc=True)
    assert (declared_size(data).width, declared_size(data).height) == (6000, 6000)
    with pytest.raises(HeaderError, match=r"declares 6000 x 6000 pixels") as caught:
        check_declared_size(data, "crc.png", max_pixels=25_000_000)
    assert caught.value.kind == "too_large"


def test_formats_nobody_measured_and_multi_page_tiffs_are_refused_undecoded(monkeypatch, tmp_path: Path) -> None:
    def no_decoding(*_args, **_kwargs):
        raise AssertionError("decoded")

    monkeypatch.setattr(data_io, "_imdecode", no_decoding)
    hdr = cv2.imencode(".hdr", np.ones((8, 8, 3), np.float32))[1].tobytes()  # Radiance HDR: OpenCV decodes it
    with pytest.raises(DatasetError, match=r"scan\.png: unreadable image: not an image"):
        data_io.decode_unchanged(hdr, "scan.png")
    pages = tmp_path / "pages.tif"
    assert cv2.imwritemulti(str(pages), [np.zeros((16, 16), np.uint8)] * 3)
    data = pages.read_bytes()
    assert declared_size(data).pages == 3
    with pytest.raises(DatasetError, match=r"pages\.tif: a TIFF with 3 pages; .* first page only"):
        data_io.decode_unchanged(data, "pages.tif")
    cut = encoded(".png")[:20]  # the header itself cut short
    with pytest.raises(DatasetError, match=r"cut\.png"):
        data_io.decode_unchanged(cut, "cut.png")


def test_readers_refuse_images_beyond_their_cap_before_decoding(monkeypatch) -> None:
    monkeypatch.setattr(data_io, "_imdecode", lambda data: pytest.fail("decoded"))
    with pytest.raises(DatasetError, match=r"declares 30000 x 30000 pixels, more than the 200 megapixels"):
        data_io.decode_unchanged(png_header_only(30000, 30000), "bomb.png")


def test_check_data_reports_unmeasurable_and_multi_page_files(tmp_path: Path) -> None:
    tree = TreeBuilder(tmp_path / "d").valid(per_class=2, splits=("train",))
    multi = tree.root / "classification_task" / "train" / "no_tumor" / "brisc2025_train_00901_no_ax_t1.tif"
    assert cv2.imwritemulti(str(multi), [np.zeros((32, 32), np.uint8)] * 2)
    index = index_dataset(tree.root)
    problems = [p for p in index.errors if p.path == multi]
    assert [p.kind for p in problems] == ["unsupported"]
    assert "a TIFF with 2 pages" in problems[0].message and "tiffsplit" in problems[0].fix


def test_one_name_in_two_class_folders_is_an_error_when_a_segmentation_image_has_it(tmp_path: Path) -> None:
    tree = TreeBuilder(tmp_path / "d").valid(per_class=2, splits=("train",))
    # The same name (no class code in it) in two class folders, two different images.
    glioma = tree.cls("train", "glioma", "gl")
    glioma = glioma.rename(glioma.with_name("case7.jpg"))
    meningioma = tree.cls("train", "meningioma", "me")
    meningioma = meningioma.rename(meningioma.with_name("case7.jpg"))
    warned = [p for p in index_dataset(tree.root).warnings if p.kind == "ambiguous_name"]
    assert len(warned) == 1 and "would be paired with either" in warned[0].message  # no segmentation image yet
    seg = tree.root / "segmentation_task" / "train"
    (seg / "images" / "case7.jpg").write_bytes(glioma.read_bytes())
    write_mask(seg / "masks" / "case7.png")
    ambiguous = [p for p in index_dataset(tree.root).errors if p.kind == "ambiguous_name"]
    assert len(ambiguous) == 1
    assert f"{glioma} (glioma)" in ambiguous[0].message and f"{meningioma} (meningioma)" in ambiguous[0].message
