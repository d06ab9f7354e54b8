"""``python -m brain_mtl predict-images``: a folder of mixed images with a corrupt file, outputs and names."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from brain_mtl.cli import main
from brain_mtl.inference import OutputWriter, Prediction
from brain_mtl.inference.outputs import safe_stem

# name -> (height, width), as written by _mixed_folder.
SIZES = {
    "gray.png": (50, 70),
    "rgb.jpg": (40, 33),
    "rgba.png": (64, 48),
    "deep16.tif": (45, 45),
    "tall.jpg": (300, 120),
}


def _mixed_folder(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name, (height, width) in SIZES.items():
        if name == "gray.png":
            image = rng.integers(0, 256, (height, width), dtype=np.uint8)
        elif name == "rgba.png":
            image = rng.integers(0, 256, (height, width, 4), dtype=np.uint8)
        elif name == "deep16.tif":
            image = rng.integers(0, 65535, (height, width), dtype=np.uint16)
        else:
            image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        assert cv2.imwrite(str(folder / name), image)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    (folder / "notes.txt").write_text("not an image, ignored in folders")
    return folder


def _read_png(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None, path
    return image


def test_folder_with_mixed_images_and_a_corrupt_file(tmp_path, tiny_ckpt, capsys):
    inputs = _mixed_folder(tmp_path / "in")
    out = tmp_path / "out"
    status = main(
        ["predict-images", "--ckpt_path", str(tiny_ckpt), "--input", str(inputs), "--output", str(out), "--gradcam"]
    )
    assert status == 1  # one file failed
    err = capsys.readouterr().err
    assert "broken.png" in err

    for name, size in SIZES.items():
        stem = Path(name).stem
        mask = _read_png(out / f"{stem}_mask.png")
        assert mask.shape == size, name
        assert set(np.unique(mask)) <= {0, 255}
        assert _read_png(out / f"{stem}_overlay.png").shape == (*size, 3)
        assert _read_png(out / f"{stem}_gradcam.png").shape == (*size, 3)
    assert not list(out.glob("broken*")) and not list(out.glob("notes*"))

    with (out / "predictions.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(Path(r["file"]).name for r in rows) == sorted(SIZES)
    for row in rows:
        probs = [float(row[f"p_{n}"]) for n in ("glioma", "meningioma", "pituitary", "no_tumor")]
        assert sum(probs) == pytest.approx(1.0, abs=1e-4)
        assert row["class"] == ("glioma", "meningioma", "pituitary", "no_tumor")[int(np.argmax(probs))]
        assert (int(row["height"]), int(row["width"])) == SIZES[Path(row["file"]).name]
        mask = _read_png(out / row["mask_file"])
        assert int(row["mask_area_px"]) == int((mask > 0).sum())

    report = json.loads((out / "predictions.json").read_text())
    assert [Path(f["file"]).name for f in report["failed"]] == ["broken.png"]
    assert "decode" in report["failed"][0]["error"]
    assert len(report["predictions"]) == len(SIZES)
    assert report["settings"]["image_size"] == 32


def test_all_good_files_exit_zero_and_tta_runs(tmp_path, tiny_ckpt):
    inputs = _mixed_folder(tmp_path / "in")
    (inputs / "broken.png").unlink()
    files = [str(inputs / "gray.png"), str(inputs / "tall.jpg")]
    out = tmp_path / "out"
    assert (
        main(["predict-images", "--ckpt_path", str(tiny_ckpt), "--input", *files, "--output", str(out), "--tta"]) == 0
    )
    assert _read_png(out / "tall_mask.png").shape == SIZES["tall.jpg"]
    assert json.loads((out / "predictions.json").read_text())["settings"]["tta"] is True


def test_missing_input_is_reported_and_empty_input_is_an_error(tmp_path, tiny_ckpt, capsys):
    good = tmp_path / "ok.png"
    cv2.imwrite(str(good), np.zeros((20, 30), dtype=np.uint8))
    out = tmp_path / "out"
    args = ["predict-images", "--ckpt_path", str(tiny_ckpt), "--output", str(out), "--input"]
    assert main([*args, str(good), str(tmp_path / "missing.png")]) == 1
    assert "missing.png" in capsys.readouterr().err
    assert _read_png(out / "ok_mask.png").shape == (20, 30)
    (tmp_path / "empty").mkdir()
    assert main([*args, str(tmp_path / "empty")]) == 2


@pytest.mark.parametrize(
    "source",
    ["../../escape.png", "..\\..\\escape.png", "/etc/passwd", "..", ".hidden.png", "a/b/../../../x y?.png", ""],
)
def test_output_names_never_leave_the_output_folder(tmp_path, source):
    stem = safe_stem(source)
    assert stem and "/" not in stem and "\\" not in stem and not stem.startswith(".")
    out = tmp_path / "out"
    with OutputWriter(out) as writer:
        row = writer.write(_fake_prediction(source))
    written = {p.resolve() for p in tmp_path.rglob("*") if p.is_file()}
    assert written and all(p.parent == out.resolve() for p in written)
    assert (out / row["mask_file"]).is_file()


def test_same_stem_from_two_folders_does_not_overwrite(tmp_path):
    out = tmp_path / "out"
    with OutputWriter(out, overlays=False) as writer:
        first = writer.write(_fake_prediction("a/scan.png", fill=1))
        second = writer.write(_fake_prediction("b/SCAN.jpg", fill=0))
    assert first["mask_file"] != second["mask_file"]
    assert _read_png(out / first["mask_file"]).max() == 255
    assert _read_png(out / second["mask_file"]).max() == 0


def _fake_prediction(source: str, fill: int = 1) -> Prediction:
    mask = np.full((6, 8), fill, dtype=np.uint8)
    return Prediction(
        source=source,
        image=np.zeros((6, 8, 3), dtype=np.uint8),
        mask=mask,
        mask_probs=mask.astype(np.float32),
        class_index=1,
        class_name="meningioma",
        class_probs=np.array([0.1, 0.6, 0.2, 0.1], dtype=np.float32),
    )


def test_unknown_gradcam_class_is_a_usage_error(tmp_path, tiny_ckpt, capsys):
    image = tmp_path / "ok.png"
    cv2.imwrite(str(image), np.zeros((20, 30), dtype=np.uint8))
    args = ["predict-images", "--ckpt_path", str(tiny_ckpt), "--input", str(image), "--output", str(tmp_path / "o")]
    assert main([*args, "--gradcam", "--gradcam_class", "astrocytoma"]) == 2
    assert "astrocytoma" in capsys.readouterr().err
    assert main([*args, "--gradcam", "--gradcam_class", "meningioma"]) == 0
    row = json.loads((tmp_path / "o" / "predictions.json").read_text())["predictions"][0]
    assert row["file"].endswith("ok.png")
    assert (tmp_path / "o" / "ok_gradcam.png").is_file()
