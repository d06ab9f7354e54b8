"""Files that look like images but are not what they seem: each is refused (or accepted) for its real cause.

Every bad file is built on the fly; each test checks that the problem names the file and the cause.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from brain_mtl.commands.data import check_data_main
from brain_mtl.data.index import index_dataset
from brain_mtl.data.inspection import inspect_file
from brain_mtl.data.io import capture_native_stderr, is_truncated, sniff_format
from tests.data.data_helpers import TreeBuilder, write_mask


def brain_like_image(size: int = 128) -> np.ndarray:
    """A non-trivial gray image (smooth structure plus noise), so that its JPEG has real entropy-coded data."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]
    image = 128 + 60 * np.sin(xx / 7.0) + 40 * np.cos(yy / 5.0) + rng.normal(0, 10, (size, size))
    return np.clip(image, 0, 255).astype(np.uint8)


def corrupt_jpeg_bytes() -> bytes:
    """A cv2-encoded JPEG whose entropy-coded data is overwritten at 40% of its length (end marker intact)."""
    data = bytearray(cv2.imencode(".jpg", brain_like_image())[1].tobytes())
    sos = data.find(b"\xff\xda")
    scan_start = sos + 2 + int.from_bytes(data[sos + 2 : sos + 4], "big")
    scan_end = len(data) - 2
    at = scan_start + (scan_end - scan_start) * 2 // 5
    data[at : at + 16] = b"\xff\xd3" * 8  # restart markers out of sequence: libjpeg loses the rest of the scan
    assert data.endswith(b"\xff\xd9")
    return bytes(data)


def only(problems, kind: str):
    found = [p for p in problems if p.kind == kind]
    assert len(found) == 1, problems
    return found[0]


# ------------------------------------------------------------------------------------------------------------
# Corrupt JPEG data (valid end marker): libjpeg warns on stderr, OpenCV returns grey
# ------------------------------------------------------------------------------------------------------------
def test_corrupt_jpeg_premise_opencv_warns_without_a_name_and_returns_grey(capfd: pytest.CaptureFixture) -> None:
    data = corrupt_jpeg_bytes()
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    err = capfd.readouterr().err
    assert "Corrupt JPEG data" in err  # the only sign, and it names no file
    assert image is not None and image.shape == (128, 128)
    assert (image == 128).mean() > 0.3  # a large part comes out flat grey
    assert (brain_like_image() == 128).mean() < 0.05


@pytest.mark.parametrize("threads", [1, 4])
def test_corrupt_jpeg_is_an_error_naming_the_file(
    tree: TreeBuilder, threads: int, capfd: pytest.CaptureFixture
) -> None:
    bad = tree.cls("train", "glioma", "gl")
    bad.write_bytes(corrupt_jpeg_bytes())
    index = index_dataset(tree.root, threads=threads)
    problem = only(index.errors, "corrupt")
    assert problem.path == bad and len(index.errors) == 1
    assert "Corrupt JPEG data" in problem.message and "grey" in problem.message
    assert str(bad) in str(problem) and "replace it" in problem.fix
    # The decoder's anonymous line was turned into the problem above, not left on stderr.
    assert "Corrupt JPEG data" not in capfd.readouterr().err


def test_corrupt_jpeg_stops_check_data_with_exit_status_1(tree: TreeBuilder, capsys: pytest.CaptureFixture) -> None:
    bad = tree.cls("test", "pituitary", "pi")
    bad.write_bytes(corrupt_jpeg_bytes())
    assert check_data_main(["--root", str(tree.root)]) == 1
    out = capsys.readouterr().out
    assert f"ERROR   {bad}: corrupt" in out


def test_capture_keeps_native_stderr_and_restores_it(capfd: pytest.CaptureFixture) -> None:
    with capture_native_stderr() as captured:
        os.write(2, b"from C code\n")
    os.write(2, b"after\n")
    assert captured.active and captured.text == "from C code\n"
    assert capfd.readouterr().err == "after\n"


# ------------------------------------------------------------------------------------------------------------
# Not an image / truncated / wrong extension / trailing bytes
# ------------------------------------------------------------------------------------------------------------
def test_text_file_named_jpg_is_not_an_image(tree: TreeBuilder, capsys: pytest.CaptureFixture) -> None:
    bad = tree.cls("train", "meningioma", "me")
    bad.write_text("<html><body>403 Forbidden</body></html>\n")
    index = index_dataset(tree.root)
    problem = only(index.errors, "not_an_image")
    assert problem.path == bad and len(index.errors) == 1
    assert problem.message.startswith("not an image") and "truncated" not in problem.message
    assert "'<html><b'" in problem.message and "HTML" in problem.message
    assert check_data_main(["--root", str(tree.root)]) == 1
    assert f"ERROR   {bad}: not an image" in capsys.readouterr().out


def test_truncated_jpeg_says_truncated(tree: TreeBuilder) -> None:
    bad = tree.cls("train", "glioma", "gl")
    bad.write_bytes(cv2.imencode(".jpg", brain_like_image())[1].tobytes()[:3000])
    problem = only(index_dataset(tree.root).errors, "truncated")
    assert problem.path == bad and "JPEG data ends before its end marker" in problem.message


def test_jpeg_with_bytes_after_its_end_marker_is_accepted(tree: TreeBuilder) -> None:
    padded = tree.cls("train", "glioma", "gl")
    padded.write_bytes(padded.read_bytes() + b"\x00" * 100 + b"appended metadata " * 10)
    index = index_dataset(tree.root)
    assert index.errors == [] and index.warnings == []
    (record,) = [r for r in index.records if r.path == padded]
    assert (record.height, record.width) == (32, 32)


def test_jpeg_named_png_is_accepted_with_a_wrong_extension_warning(tree: TreeBuilder) -> None:
    jpg = tree.cls("train", "glioma", "gl")
    misnamed = jpg.with_suffix(".png")
    jpg.rename(misnamed)
    index = index_dataset(tree.root)
    assert index.errors == []
    warning = only(index.warnings, "wrong_extension")
    assert warning.path == misnamed and "it is a JPEG, named .png" in warning.message
    assert warning.fix == f"rename it to {misnamed.stem}.jpg."
    assert any(r.path == misnamed and r.height == 32 for r in index.records)


def test_png_mask_named_jpg_is_accepted_with_a_wrong_extension_warning(tree: TreeBuilder) -> None:
    _, seg, mask = tree.pair("train", "pituitary", "pi")
    misnamed = mask.with_suffix(".jpg")
    mask.rename(misnamed)
    index = index_dataset(tree.root)
    assert index.errors == []
    warning = only(index.warnings, "wrong_extension")
    assert warning.path == misnamed and "it is a PNG, named .jpg" in warning.message
    (record,) = [r for r in index.records if r.path == seg]
    assert record.mask_path == misnamed and record.mask_area and record.mask_area > 0


def test_truncated_jpeg_named_png_is_judged_as_a_jpeg(tmp_path: Path) -> None:
    data = cv2.imencode(".jpg", brain_like_image())[1].tobytes()
    (tmp_path / "whole.png").write_bytes(data)
    (tmp_path / "cut.png").write_bytes(data[:3000])
    whole = inspect_file(tmp_path / "whole.png")
    assert whole.error is None and whole.format == "jpeg"
    assert [kind for kind, _, _ in whole.notes] == ["wrong_extension"]
    cut = inspect_file(tmp_path / "cut.png")
    assert cut.error_kind == "truncated" and "JPEG data" in (cut.error or "")


def test_truncation_ignores_the_end_marker_of_an_exif_thumbnail() -> None:
    thumbnail = cv2.imencode(".jpg", brain_like_image(16))[1].tobytes()
    main = cv2.imencode(".jpg", brain_like_image())[1].tobytes()
    payload = b"Exif\x00\x00" + thumbnail
    app1 = b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload
    with_thumbnail = main[:2] + app1 + main[2:]
    assert not is_truncated(with_thumbnail)
    assert is_truncated(with_thumbnail[:-400])  # the thumbnail's FFD9 is still in the file


def test_sniff_format() -> None:
    assert sniff_format(cv2.imencode(".jpg", brain_like_image(8))[1].tobytes()) == "jpeg"
    assert sniff_format(cv2.imencode(".png", brain_like_image(8))[1].tobytes()) == "png"
    assert sniff_format(b"hello world") is None
    assert sniff_format(b"") is None


# ------------------------------------------------------------------------------------------------------------
# Suspicious masks and empty class folders
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("foreground", [1.0, 0.95])
def test_nearly_full_mask_is_a_warning(tree: TreeBuilder, foreground: float) -> None:
    _, _, mask = tree.pair("train", "glioma", "gl")
    pixels = np.zeros((32, 32), np.uint8)
    pixels.reshape(-1)[: round(foreground * pixels.size)] = 255
    cv2.imwrite(str(mask), pixels)
    index = index_dataset(tree.root)
    assert index.errors == []
    warning = only(index.warnings, "full_mask")
    assert warning.path == mask and "inverted" in warning.message and f"{foreground:.1%}" in warning.message


def test_ordinary_masks_give_no_full_mask_warning(tree: TreeBuilder) -> None:
    write_mask(tree.pair("train", "glioma", "gl")[2])
    assert not [p for p in index_dataset(tree.root).warnings if p.kind == "full_mask"]


def test_empty_class_folder_is_a_missing_class_warning(tree: TreeBuilder) -> None:
    folder = tree.root / "classification_task" / "test" / "no_tumor"
    shutil.rmtree(folder)
    folder.mkdir()
    index = index_dataset(tree.root)
    assert index.errors == []
    warning = only(index.warnings, "missing_class")
    assert warning.path == folder and "empty" in warning.message and "no_tumor" in warning.message


def test_absent_class_folder_is_still_reported_on_the_split(tree: TreeBuilder) -> None:
    split = tree.root / "classification_task" / "test"
    shutil.rmtree(split / "no_tumor")
    warning = only(index_dataset(tree.root).warnings, "missing_class")
    assert warning.path == split and "no_tumor" in warning.message


# ------------------------------------------------------------------------------------------------------------
# check-data: exit status and strict JSON
# ------------------------------------------------------------------------------------------------------------
def test_check_data_passes_with_warnings_only_and_prints_strict_json(
    tree: TreeBuilder, capsys: pytest.CaptureFixture
) -> None:
    jpg = tree.cls("train", "glioma", "gl")
    jpg.rename(jpg.with_suffix(".png"))
    assert check_data_main(["--root", str(tree.root), "--json"]) == 0

    def refuse(name: str):
        raise ValueError(f"not strict JSON: {name}")

    summary = json.loads(capsys.readouterr().out, parse_constant=refuse)
    assert summary["errors"] == 0
    assert [p["kind"] for p in summary["problems"]] == ["wrong_extension"]
