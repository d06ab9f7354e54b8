"""``python -m brain_mtl predict-images``: a folder of mixed images with a corrupt file, outputs and names."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from brain_mtl.commands.main import main
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
    # The reason is the data layer's (its wording is tested there); here: it is given, and names the file.
    assert "broken.png" in report["failed"][0]["error"] and "unreadable" in report["failed"][0]["error"]
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
    assert json.loads((out / "predictions.json").read_text())["settings"]["tta"] == "flip"  # a bare --tta: flip


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


def _write_scans(folder: Path, *names: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, name in enumerate(names):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(path), np.full((20, 24), 40 * i, dtype=np.uint8))
        paths.append(path)
    return paths


def _predict(ckpt: Path, inputs, out: Path, *extra: str) -> int:
    return main(
        ["predict-images", "--ckpt_path", str(ckpt), "--input", *map(str, inputs), "--output", str(out), *extra]
    )


def _csv_files(out: Path) -> list[str]:
    with (out / "predictions.csv").open(newline="") as f:
        return sorted(Path(row["file"]).name for row in csv.DictReader(f))


def _one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def test_output_folder_that_holds_files_is_refused_without_overwrite(tmp_path, tiny_ckpt, capsys):
    scans = _write_scans(tmp_path / "in", "a.png", "b.png")
    out = tmp_path / "out"
    assert _predict(tiny_ckpt, scans, out) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()

    assert _predict(tiny_ckpt, scans[:1], out) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert str(out) in line and "--overwrite" in line and "another folder" in line
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing touched

    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("not ours")
    assert _predict(tiny_ckpt, scans, other) == 2
    assert str(other) in _one_line_error(capsys.readouterr().err)
    assert [p.name for p in other.iterdir()] == ["notes.txt"]


def test_overwrite_removes_the_previous_runs_files_and_keeps_the_rest(tmp_path, tiny_ckpt, capsys):
    scans = _write_scans(tmp_path / "in", "a.png", "b.png")
    out = tmp_path / "out"
    assert _predict(tiny_ckpt, scans, out, "--gradcam") == 0
    assert (out / "b_gradcam.png").is_file()
    (out / "notes.txt").write_text("the user's own file")
    capsys.readouterr()

    assert _predict(tiny_ckpt, scans[:1], out, "--overwrite") == 0
    captured = capsys.readouterr()
    names = sorted(p.name for p in out.iterdir())
    # b's files and a's Grad-CAM belonged to the previous run only: gone, not left to mix with this run's.
    assert names == ["a_mask.png", "a_overlay.png", "notes.txt", "predictions.csv", "predictions.json"]
    assert (out / "notes.txt").read_text() == "the user's own file"
    assert "removed 8 files of the previous run" in captured.out  # 2 x (mask, overlay, gradcam), csv, json
    assert "1 other" in captured.err
    assert _csv_files(out) == ["a.png"]
    report = json.loads((out / "predictions.json").read_text())
    assert report["files"] == ["a_mask.png", "a_overlay.png"]


def test_a_recursive_run_never_reads_its_own_output(tmp_path, tiny_ckpt, capsys):
    scans = tmp_path / "scans"
    _write_scans(scans, "a.png", "sub/b.png")
    out = scans / "predictions"
    assert _predict(tiny_ckpt, [scans], out, "--recursive") == 0
    assert _csv_files(out) == ["a.png", "b.png"]
    # Second run: the masks and overlays now lying under scans/ are not inputs.
    assert _predict(tiny_ckpt, [scans], out, "--recursive", "--overwrite") == 0
    assert _csv_files(out) == ["a.png", "b.png"]
    assert "not read as inputs" in capsys.readouterr().err

    # Output folder == input folder: nothing in it is an input.
    alone = tmp_path / "alone"
    _write_scans(alone, "c.png")
    assert _predict(tiny_ckpt, [alone], alone, "--overwrite") == 2
    assert "never read" in _one_line_error(capsys.readouterr().err)
    assert [p.name for p in alone.iterdir()] == ["c.png"]

    # An input folder inside the output folder is read: only the output folder's own tree under an input is left out.
    _write_scans(out / "more", "d.png")
    assert _predict(tiny_ckpt, [out / "more"], out, "--recursive", "--overwrite") == 0
    assert _csv_files(out) == ["d.png"]


def test_output_path_that_is_a_file_is_a_one_line_error(tmp_path, tiny_ckpt, capsys):
    scans = _write_scans(tmp_path / "in", "a.png")
    taken = tmp_path / "results.csv"
    taken.write_text("keep me")
    assert _predict(tiny_ckpt, scans, taken) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert str(taken) in line and "existing file" in line
    assert taken.read_text() == "keep me"
    # A folder below a file cannot be created either.
    assert _predict(tiny_ckpt, scans, taken / "sub") == 2
    assert "cannot write" in _one_line_error(capsys.readouterr().err)


def test_threshold_that_is_not_a_probability_is_a_usage_error(tmp_path, tiny_ckpt, capsys):
    scans = _write_scans(tmp_path / "in", "a.png")
    for value in ("1.5", "-0.1"):
        assert _predict(tiny_ckpt, scans, tmp_path / "out", "--threshold", value) == 2
        assert "--threshold" in _one_line_error(capsys.readouterr().err)
    # NaN is not even a float to the parser: the usage and the option's name, status 2.
    with pytest.raises(SystemExit) as info:
        _predict(tiny_ckpt, scans, tmp_path / "out", "--threshold", "nan")
    assert info.value.code == 2 and '"threshold"' in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def _strict_json(text: str):
    def refuse(token: str):
        raise AssertionError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_probabilities_fail_the_image_and_keep_the_tables_strict(tmp_path, tiny_ckpt, capsys):
    from tests.inference.helpers import overflow_checkpoint

    ckpt = tmp_path / "overflow.ckpt"
    overflow_checkpoint(ckpt, tiny_ckpt)  # finite weights, class logits +inf: softmax gives NaN
    scans = _write_scans(tmp_path / "in", "a.png")
    out = tmp_path / "out"
    # Sanity: a checkpoint that cannot be loaded is one error line (status 1, as for fit) and writes nothing.
    assert _predict(tiny_ckpt.parent / "missing.ckpt", scans, out) == 1
    assert "no such checkpoint file" in _one_line_error(capsys.readouterr().err) and not out.exists()
    assert _predict(ckpt, scans, out) == 1
    assert "not finite" in capsys.readouterr().err
    report = _strict_json((out / "predictions.json").read_text())
    assert report["predictions"] == [] and report["files"] == []
    assert [Path(f["file"]).name for f in report["failed"]] == ["a.png"]
    assert "not finite" in report["failed"][0]["error"]
    assert "nan" not in (out / "predictions.csv").read_text().lower()
    assert sorted(p.name for p in out.iterdir()) == ["predictions.csv", "predictions.json"]


def test_output_writer_refuses_non_finite_probabilities_and_writes_strict_json(tmp_path):
    out = tmp_path / "out"
    broken = _fake_prediction("x.png")
    broken.class_probs = np.array([np.nan, 0.5, 0.2, 0.3], dtype=np.float32)
    with OutputWriter(out, settings={"mask_threshold": float("nan"), "scale": np.float32(2.0)}) as writer:
        with pytest.raises(ValueError, match="not finite"):
            writer.write(broken)
        writer.write(_fake_prediction("y.png"))
    assert not (out / "x_mask.png").exists()
    report = _strict_json((out / "predictions.json").read_text())
    assert report["settings"] == {"mask_threshold": None, "scale": 2.0}
    assert [row["file"] for row in report["predictions"]] == ["y.png"]


def test_image_size_the_network_cannot_take_is_a_usage_error(tmp_path, tiny_ckpt, capsys):
    # Checked once before any image is read: a size that is not a multiple of the output stride (4 here) fails
    # every forward pass, and d4 TTA's rotations need both sides to be such multiples.
    image = tmp_path / "scan.png"
    cv2.imwrite(str(image), np.zeros((20, 30), dtype=np.uint8))
    out = tmp_path / "out"
    args = ["predict-images", "--ckpt_path", str(tiny_ckpt), "--input", str(image), "--output", str(out)]
    assert main([*args, "--image_size", "30", "--tta", "d4"]) == 2
    assert "not a multiple of the network's output stride 4" in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())
