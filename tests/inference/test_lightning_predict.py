"""LightningCLI's ``predict`` with the PredictionWriter: the files of ``predict-images``, the same numbers."""

from __future__ import annotations

import json
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from brain_mtl import BrainTumorDataModule, BrainTumorModule
from brain_mtl.callbacks import PredictionWriter
from brain_mtl.commands.main import main
from brain_mtl.data.io import read_image
from brain_mtl.inference import Preprocessing
from brain_mtl.inference.outputs import OutputFolderError
from tests.inference.conftest import QUICKSTART
from tests.inference.helpers import BrightnessSegmenter, lightning_predict_args, prediction_rows


def _trainer(tmp_path, image_size: int, keep_aspect: bool = False, ckpt_path=None) -> SimpleNamespace:
    """What the writer reads of a one-process trainer, with a real datamodule (never set up: nothing is read)."""
    datamodule = BrainTumorDataModule(str(tmp_path / "no_data"), image_size=image_size, keep_aspect=keep_aspect)
    return SimpleNamespace(datamodule=datamodule, world_size=1, global_rank=0, ckpt_path=ckpt_path)


def _module() -> BrainTumorModule:
    return BrainTumorModule(base_channels=4, depth=2, mask_threshold=0.5)


def test_lightning_predict_writes_what_predict_images_writes(tmp_path, trained):
    out_cli = tmp_path / "lightning"
    args = lightning_predict_args(QUICKSTART, trained.ckpt, trained.data_root, out_cli, tmp_path / "run")
    status = main([*args, "--model.base_channels", "8"])
    assert status == 0
    test_images = sorted((trained.data_root / "classification_task" / "test").rglob("*.jpg"))
    lightning_rows = prediction_rows(out_cli / "predictions.csv")
    assert sorted(lightning_rows) == sorted(p.name for p in test_images)
    for image_path in test_images:
        row = lightning_rows[image_path.name]
        mask = cv2.imread(str(out_cli / row["mask_file"]), cv2.IMREAD_GRAYSCALE)
        assert mask.shape == read_image(image_path).shape[:2]
        assert (out_cli / f"{row['stem']}_overlay.png").is_file()
    assert json.loads((out_cli / "predictions.json").read_text())["failed"] == []

    # The same images through predict-images: the same probabilities and masks.
    out_tool = tmp_path / "tool"
    args = ["predict-images", "--ckpt_path", str(trained.ckpt), "--output", str(out_tool), "--no_overlay", "--input"]
    assert main([*args, *map(str, test_images)]) == 0
    tool_rows = prediction_rows(out_tool / "predictions.csv")
    for name, row in lightning_rows.items():
        for key in ("p_glioma", "p_meningioma", "p_pituitary", "p_no_tumor"):
            assert float(row[key]) == pytest.approx(float(tool_rows[name][key]), abs=1e-4)
        assert abs(int(row["mask_area_px"]) - int(tool_rows[name]["mask_area_px"])) <= 2


def test_writer_undoes_the_letterbox_of_predict_step_outputs(tmp_path):
    # A non-square scan with a bright box near one end; the datamodule letterboxes it to 64x64.
    height, width = 50, 160
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[10:30, 120:150] = 255
    path = tmp_path / "wide.png"
    cv2.imwrite(str(path), image)

    model = BrightnessSegmenter()
    x = Preprocessing(64, keep_aspect=True)(read_image(path))[None]
    with torch.no_grad():
        out = model(x)
    prediction = {
        "mask_probs": torch.sigmoid(out.mask_logits),
        "class_probs": torch.softmax(out.class_logits, 1),
        "path": [str(path)],
        "orig_size": torch.tensor([[height, width]]),
    }
    trainer, module = _trainer(tmp_path, 64, keep_aspect=True), _module()
    writer = PredictionWriter(output_dir=str(tmp_path / "out"))
    writer.on_predict_start(trainer, module)
    writer.write_on_batch_end(trainer, module, prediction, None, None, 0)
    writer.on_predict_end(trainer, module)

    mask = cv2.imread(str(tmp_path / "out" / "wide_mask.png"), cv2.IMREAD_GRAYSCALE) > 0
    truth = np.zeros((height, width), dtype=bool)
    truth[10:30, 120:150] = True
    assert mask.shape == (height, width)
    assert (mask & truth).sum() / (mask | truth).sum() > 0.8
    row = prediction_rows(tmp_path / "out" / "predictions.csv")["wide.png"]
    assert row["class"] == "pituitary"  # BrightnessSegmenter's fixed logits favour class 2


def test_writer_warns_when_the_datamodule_resizes_differently_from_training(tmp_path, tiny_ckpt):
    trainer, module = _trainer(tmp_path, 64, ckpt_path=str(tiny_ckpt)), _module()  # trained at 32 px
    writer = PredictionWriter(output_dir=str(tmp_path / "out"))
    with pytest.warns(UserWarning, match="--data.image_size 32"):
        writer.on_predict_start(trainer, module)
    writer.on_predict_end(trainer, module)


def test_writer_lists_non_finite_predictions_as_failed_and_warns(tmp_path):
    path = tmp_path / "scan.png"
    cv2.imwrite(str(path), np.zeros((20, 30), dtype=np.uint8))
    prediction = {
        "mask_probs": torch.full((2, 1, 32, 32), 0.2),
        "class_probs": torch.tensor([[float("nan")] * 4, [0.1, 0.2, 0.3, 0.4]]),
        "path": [str(path), str(path)],
        "orig_size": torch.tensor([[20, 30], [20, 30]]),
    }
    trainer, module = _trainer(tmp_path, 32), _module()
    writer = PredictionWriter(output_dir=str(tmp_path / "out"))
    writer.on_predict_start(trainer, module)
    writer.write_on_batch_end(trainer, module, prediction, None, None, 0)
    with pytest.warns(UserWarning, match="1 of 2 images got no prediction"):
        writer.on_predict_end(trainer, module)

    text = (tmp_path / "out" / "predictions.json").read_text()
    report = json.loads(text, parse_constant=lambda token: pytest.fail(f"non-standard JSON token {token}"))
    assert len(report["predictions"]) == 1 and len(report["failed"]) == 1
    assert "not finite" in report["failed"][0]["error"]
    assert "nan" not in (tmp_path / "out" / "predictions.csv").read_text().lower()


def _one_scan_prediction(tmp_path) -> dict:
    path = tmp_path / "scan.png"
    cv2.imwrite(str(path), np.zeros((20, 30), dtype=np.uint8))
    return {
        "mask_probs": torch.full((1, 1, 32, 32), 0.2),
        "class_probs": torch.tensor([[0.1, 0.2, 0.3, 0.4]]),
        "path": [str(path)],
        "orig_size": torch.tensor([[20, 30]]),
    }


def _run_writer(writer: PredictionWriter, trainer, module, prediction: dict) -> None:
    writer.on_predict_start(trainer, module)
    writer.write_on_batch_end(trainer, module, prediction, None, None, 0)
    writer.on_predict_end(trainer, module)


def test_writer_refuses_a_folder_with_files_unless_overwrite_as_predict_images_does(tmp_path):
    trainer, module, prediction = _trainer(tmp_path, 32), _module(), _one_scan_prediction(tmp_path)
    out = tmp_path / "out"
    _run_writer(PredictionWriter(output_dir=str(out)), trainer, module, prediction)
    (out / "notes.txt").write_text("the user's own file")
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    with pytest.raises(OutputFolderError, match="is not empty; pass overwrite=True") as info:
        PredictionWriter(output_dir=str(out)).on_predict_start(trainer, module)
    assert str(out) in str(info.value) and "--trainer.callbacks.overwrite true" in str(info.value)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing touched

    # overwrite: the previous run's files are replaced, the user's file stays.
    _run_writer(PredictionWriter(output_dir=str(out), overlays=False, overwrite=True), trainer, module, prediction)
    assert sorted(p.name for p in out.iterdir()) == [
        "notes.txt",
        "predictions.csv",
        "predictions.json",
        "scan_mask.png",
    ]
    assert (out / "notes.txt").read_text() == "the user's own file"


def test_writer_output_folder_refusal_is_one_error_line_from_the_command_line(tmp_path, tiny_ckpt, capsys):
    data_root = tmp_path / "data"
    assert main(["synth", "--root", str(data_root), "--train", "4", "--test", "4", "--seed", "3"]) == 0
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("not ours")
    capsys.readouterr()
    args = lightning_predict_args(QUICKSTART, tiny_ckpt, data_root, out, tmp_path / "run")
    assert main([*args, "--model.base_channels", "4", "--model.depth", "2", "--data.image_size", "32"]) == 1
    err = capsys.readouterr().err
    assert f"error: output folder {out} is not empty" in err and "Traceback" not in err
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_writer_names_what_it_needs_instead_of_guessing(tmp_path):
    writer = PredictionWriter(output_dir=str(tmp_path / "out"))
    no_datamodule = SimpleNamespace(datamodule=None, world_size=1, global_rank=0, ckpt_path=None)
    with pytest.raises(TypeError, match="BrainTumorDataModule, but the trainer has no datamodule"):
        writer.on_predict_start(no_datamodule, _module())
    with pytest.raises(TypeError, match=r"BrainTumorModule\.predict_step .* not of a BrightnessSegmenter"):
        writer.on_predict_start(_trainer(tmp_path, 32), BrightnessSegmenter())
    assert not (tmp_path / "out").exists()


def test_the_old_import_path_still_resolves_with_a_deprecation_warning():
    import brain_mtl.inference

    with pytest.warns(DeprecationWarning, match="moved to brain_mtl.callbacks.PredictionWriter"):
        assert brain_mtl.inference.PredictionWriter is PredictionWriter
